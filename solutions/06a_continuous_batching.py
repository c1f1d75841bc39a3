"""Solutions to chapter 06a's exercises (Continuous batching)."""
CLIP = 4096          # SGLang's CLIP_MAX_NEW_TOKENS: no request reserves more outputs than this


def admits(scheduler, req):
    """PrefillAdder.add_one_req for the first request of a round (no chunking)."""
    found = scheduler.router.lookup(req)                        # the capped match
    extend = len(req.tokens) - found.prefix_len
    cost = extend + min(req.params.max_new_tokens, CLIP) + scheduler.page_size
    reserved = sum(min(r.remaining_new_tokens, CLIP) * scheduler.new_token_ratio for r in scheduler.running)
    room = scheduler.router.free_tokens - reserved - scheduler.router.unlocked_tokens(found.node)
    return cost < room


def retraction_order(running):
    """Victims first: fewest outputs, then longest prompt; ties: the later in the batch first."""
    order = sorted(enumerate(running), key=lambda ir: (len(ir[1].output), -len(ir[1].prompt), -ir[0]))
    return [req.rid for _, req in order]
