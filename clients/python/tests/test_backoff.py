from usersite_client import Backoff


def test_delays_double_up_to_the_cap():
    backoff = Backoff(0.5, 4.0, random=lambda: 0.0)

    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_the_random_part_shortens_a_delay_by_up_to_half():
    draws = iter([0.0, 0.5, 1.0])
    backoff = Backoff(1.0, 1.0, random=lambda: next(draws))

    assert [backoff.next_delay() for _ in range(3)] == [1.0, 0.75, 0.5]


def test_reset_starts_again_from_the_first_delay():
    backoff = Backoff(0.5, 30.0, random=lambda: 0.0)
    for _ in range(5):
        backoff.next_delay()

    backoff.reset()

    assert backoff.next_delay() == 0.5


def test_a_server_away_for_long_keeps_the_delay_at_the_cap():
    backoff = Backoff(0.5, 30.0, random=lambda: 0.0)

    delays = [backoff.next_delay() for _ in range(5000)]

    assert delays[-1] == 30.0
