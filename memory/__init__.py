"""What an agent keeps in mind: short-term context strategies and (later) long-term memory."""
