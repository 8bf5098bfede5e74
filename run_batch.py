#!/usr/bin/env python3
"""Nightly batch runner; see jobs/batch.py or `python run_batch.py --help`."""
from jobs.batch import main

if __name__ == "__main__":
    main()
