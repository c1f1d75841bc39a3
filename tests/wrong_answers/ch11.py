WRONG = {
    # loads what fits: the longest leading part of the chain within the quota (not all or nothing)
    "tokens_loaded": lambda chain, threshold, quota, newly: (
        0 if sum(chain) < threshold else sum(chain) if quota is None else
        max([sum(chain[:k]) for k in range(len(chain) + 1) if sum(chain[:k]) <= quota - newly], default=0)),
    # the ratio alone, without SGLang's extra page
    "host_pages_for_1000": 2000,
}
