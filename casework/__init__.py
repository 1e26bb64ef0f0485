"""The domain of the desk: cases, people, enforcement, and their storage."""
