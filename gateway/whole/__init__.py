"""The whole gateway in one view, across `serve --workers N` processes and nodes on one store.

Every serving process reports itself to the storage engine every few seconds (report.py: its
relay state per destination and its events per minute), and the console reads every report
back (view.py: the live processes, each destination's relay state merged, the per-minute
chart). Live events cross processes through the store while someone watches (feed.py). The
cleanup context that runs both is `whole_ctx` (service.py).
"""
