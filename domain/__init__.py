"""Pure domain of Salon: events, aggregates, policies. No I/O lives here."""
