"""groundkit's foundation: types, geometry, checks, I/O and safe loading. Imports nothing else of groundkit."""
