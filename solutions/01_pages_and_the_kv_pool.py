"""Solutions to chapter 01's exercises (Pages and the KV pool)."""


def slots_of(pages, page_size, num_tokens):
    """Page p holds slots p*page_size .. p*page_size + page_size - 1; a request's tokens fill its
    pages in order, so its first num_tokens slots are those of its pages, laid end to end."""
    slots = [page * page_size + offset for page in pages for offset in range(page_size)]
    return slots[:num_tokens]


def kv_bytes_per_token(num_layers, kv_heads, head_dim, bytes_per_element):
    """K and V (2) in every layer, each kv_heads x head_dim elements."""
    return 2 * num_layers * kv_heads * head_dim * bytes_per_element
