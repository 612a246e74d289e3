"""Two-person control and break-glass.

`service` (with `changes`): a change that accepts exposure on a `block`-guarded dataset,
releases a hold, or grows a block dataset's audience beyond the limit is requested by one
principal and applied, with its acceptance, when another approves it. `breakglass`: time-boxed
access given at once, reviewed afterwards by a second person. This domain sits above
`app.changes`, whose pipeline it drives.
"""
