"""Chapter 05 exercises (filled in as the chapter is written)."""
EXERCISES: list = []
