"""A sync-call integration whose workflow code is broken (every workflow task raises), with a short execution
timeout: what main shows of a workflow that cannot go on."""
