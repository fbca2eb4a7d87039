"""Run plumbing shared by every stage: command-line errors, atomic files and folder locks, saved states, a
resumable CSV log and its charts, data-parallel processes, the optimiser.
"""
