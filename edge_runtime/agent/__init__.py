"""The device agent: joins a coordinator, trains the slices it is given, uploads compact updates."""
