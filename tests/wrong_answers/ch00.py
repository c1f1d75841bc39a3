WRONG = {
    "first_500_hit_rate": 0.5,
    "cold_starts": 2211,                 # without the len-1 cap: a repeated prompt would hit fully
}
