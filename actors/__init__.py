"""Ray actors: one writer per room and per agent, activated on demand by id."""
