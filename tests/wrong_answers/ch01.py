WRONG = {
    "slots_of": lambda pages, page_size, n: [p * page_size + i for p in pages for i in range(page_size)],
    "kv_bytes_per_token": lambda layers, heads, dim, size: layers * heads * dim * size,   # forgot V
}
