"""Read models fed from the event log."""
