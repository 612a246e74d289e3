"""Policy changes and their routes: a grant made or revoked, a group's members changed, a
dataset registered or re-scoped (its guard too).

Each change loads the committed policy, makes its change, re-analyses the findings it can
affect (`app.exposure`) and writes both in one transaction, before its response is sent. This
domain sits above `exposure`, `policy`, `directory` and `datasets`; none of those imports it.
"""
