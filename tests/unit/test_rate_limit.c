/*
 * test_rate_limit.c - the scrub's pacing (sync/rate_limit.c): the average
 * over a window is the rate, a reader that fell behind does not burst, a
 * new rate starts a new window.
 */
#include "check.h"
#include "rate_limit.h"

static void test_reads_at_the_rate_wait_their_share(void)
{
    struct sync_rate_limit r;

    sync_rate_limit_init(&r, 100000000, 1000); /* 100 MB/s */
    CHECK_INT(sync_rate_limit_take(&r, 1000000, 1000), 10);
    CHECK_INT(sync_rate_limit_take(&r, 1000000, 1010), 10);
    CHECK_INT(sync_rate_limit_take(&r, 1000000, 1030), 0);
}

static void test_a_second_of_reads_takes_a_second(void)
{
    struct sync_rate_limit r;
    uint64_t now = 5000, waited = 0;

    sync_rate_limit_init(&r, 100000000, now);
    for (int i = 0; i < 100; i++) {
        uint64_t wait = sync_rate_limit_take(&r, 1000000, now);

        now += wait;
        waited += wait;
    }
    CHECK_INT(waited, 1000);
}

static void test_a_reader_that_fell_behind_does_not_burst(void)
{
    struct sync_rate_limit r;

    sync_rate_limit_init(&r, 1000000, 0); /* 1 MB/s */
    CHECK_INT(sync_rate_limit_take(&r, 1000000, 0), 1000);
    /* paused for ten seconds: the next megabyte waits its full second */
    CHECK_INT(sync_rate_limit_take(&r, 1000000, 11000), 0);
    CHECK_INT(sync_rate_limit_take(&r, 1000000, 11000), 1000);
}

static void test_a_short_delay_is_made_up(void)
{
    struct sync_rate_limit r;

    sync_rate_limit_init(&r, 1000000, 0); /* 1 MB/s */
    CHECK_INT(sync_rate_limit_take(&r, 1000000, 0), 1000);
    /* woke 300 ms late: the next megabyte is due 300 ms early */
    CHECK_INT(sync_rate_limit_take(&r, 1000000, 1300), 700);
}

static void test_a_new_rate_starts_a_new_window(void)
{
    struct sync_rate_limit r;

    sync_rate_limit_init(&r, 100000000, 0);
    CHECK_INT(sync_rate_limit_take(&r, 1000000, 0), 10);
    sync_rate_limit_init(&r, 10000000, 10); /* a tenth */
    CHECK_INT(sync_rate_limit_take(&r, 1000000, 10), 100);
}

int main(void)
{
    RUN(test_reads_at_the_rate_wait_their_share);
    RUN(test_a_second_of_reads_takes_a_second);
    RUN(test_a_reader_that_fell_behind_does_not_burst);
    RUN(test_a_short_delay_is_made_up);
    RUN(test_a_new_rate_starts_a_new_window);
    return check_exit();
}
