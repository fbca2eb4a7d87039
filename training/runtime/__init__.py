"""Run plumbing shared by every stage: command-line errors, atomic files, run folders (lock, settings, logs),
saved states, a resumable CSV log and its charts, data-parallel processes, the optimiser.
"""
