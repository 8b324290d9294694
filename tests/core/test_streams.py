from mcu_lightning.core.streams import stream_generator, stream_seed


def test_stream_seed_depends_on_the_whole_key():
    keys = [(0, "data-order", 1), (1, "data-order", 0), (0, "retain-partners", 1), (0, "data-order", 1, 0)]
    seeds = [stream_seed(*key) for key in keys]
    assert len(set(seeds)) == len(seeds)  # seed + epoch would make the first two equal
    assert all(0 <= s < 2**63 for s in seeds)
    assert stream_seed(0, "data-order", 1) == stream_seed(0, "data-order", 1)


def test_stream_generator_is_seeded_by_the_key():
    a = stream_generator(2, "curve-t", 5).initial_seed()
    assert a == stream_seed(2, "curve-t", 5) and a != stream_generator(2, "curve-t", 6).initial_seed()
