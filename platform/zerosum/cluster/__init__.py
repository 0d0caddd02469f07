"""Running job specs and campaigns on a Ray cluster through Ray's Jobs API.

    head    one Ray head: address, auth token, clear errors, waiting and tailing
    submit  a submission: validated spec, staged working_dir, shipped packages
"""
