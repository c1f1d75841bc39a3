def _without_the_lock(scheduler, req):
    """Forgets that locking the prefix takes its tokens out of what eviction could free."""
    found = scheduler.router.lookup(req)
    cost = len(req.tokens) - found.prefix_len + min(req.params.max_new_tokens, 4096) + scheduler.page_size
    reserved = sum(min(r.remaining_new_tokens, 4096) * scheduler.new_token_ratio for r in scheduler.running)
    return cost < scheduler.router.free_tokens - reserved


WRONG = {
    "admits": _without_the_lock,
    "retraction_order": lambda running: [r.rid for r in sorted(running, key=lambda r: (len(r.output), -len(r.prompt)))],
}
