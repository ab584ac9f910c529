"""The app's garbage-collection schedule: full passes wait for an idle user."""

import gc

from resnet_tui.app.garbage import (
    FULL_AFTER_IDLE_S,
    FULL_AT_LEAST_EVERY_S,
    FULL_AT_MOST_EVERY_S,
    GarbageSchedule,
)


def test_the_schedule_takes_the_collector_over_and_gives_it_back():
    schedule = GarbageSchedule()
    schedule.start()
    try:
        assert not gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        schedule.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_full_pass_waits_for_an_idle_user_and_comes_at_the_latest_when_due():
    schedule = GarbageSchedule()
    schedule.start()
    try:
        assert schedule.tick() == 1  # just started: young generations only

        schedule.last_full -= FULL_AT_MOST_EVERY_S  # a full pass would be due...
        schedule.input_seen()  # ...but the user is typing
        assert schedule.tick() == 1

        schedule.last_input -= FULL_AFTER_IDLE_S  # the user left the keys alone
        assert schedule.tick() == 2
        assert schedule.tick() == 1  # and not again at once

        schedule.input_seen()
        schedule.last_full -= FULL_AT_LEAST_EVERY_S  # typing for minutes on end
        assert schedule.tick() == 2
    finally:
        schedule.stop()


def test_cyclic_garbage_is_freed_by_the_scheduled_passes():
    class Node:
        pass

    schedule = GarbageSchedule()
    schedule.start()
    try:
        collected_before = sum(s["collected"] for s in gc.get_stats())
        for _ in range(1000):
            a, b = Node(), Node()
            a.other, b.other = b, a  # a cycle: reference counting alone never frees it
        del a, b
        schedule.tick()
        assert sum(s["collected"] for s in gc.get_stats()) - collected_before >= 2000
    finally:
        schedule.stop()
