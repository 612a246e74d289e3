"""An example employee-activity store that asks aclaudit before every read.

Run it with ``python -m examples.activity_store`` (see README.md next to this file).
"""
