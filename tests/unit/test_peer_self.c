/*
 * test_peer_self.c - which entries of a sync's list are this daemon
 * (sync/peer/self.c): --listen's own text, its address by another name,
 * any local address with a wildcard --listen; never another port or another
 * address; and the name a wildcard --listen is known by on the way to the
 * origin.
 */
#include "check.h"
#include "peer/peer.h"

static void test_the_listen_text_and_its_address_by_name_are_self(void)
{
    CHECK(sync_peer_is_self("127.0.0.1:8001", "127.0.0.1:8001"), "the same text");
    CHECK(sync_peer_is_self("localhost:8001", "127.0.0.1:8001"), "localhost is 127.0.0.1");
    CHECK(sync_peer_is_self("[::1]:8001", "[::1]:8001"), "the same v6 text");
}

static void test_another_port_or_address_is_not_self(void)
{
    CHECK(!sync_peer_is_self("127.0.0.1:8002", "127.0.0.1:8001"), "another port");
    CHECK(!sync_peer_is_self("127.0.0.2:8001", "127.0.0.1:8001"),
          "another loopback address: another daemon may listen there");
    CHECK(!sync_peer_is_self("127.0.0.1:8001", ""), "no --listen known");
    CHECK(!sync_peer_is_self("nonsense", "127.0.0.1:8001"), "not host:port");
    CHECK(!sync_peer_is_self("no-such-host.invalid:8001", "127.0.0.1:8001"), "a name that fails");
}

static void test_a_wildcard_listen_is_any_local_address_on_its_port(void)
{
    CHECK(sync_peer_is_self("127.0.0.1:8001", "0.0.0.0:8001"), "loopback is local");
    CHECK(sync_peer_is_self("127.0.0.5:8001", "0.0.0.0:8001"), "all of 127/8 is local");
    CHECK(!sync_peer_is_self("127.0.0.1:8002", "0.0.0.0:8001"), "another port");
    /* TEST-NET-3 (RFC 5737): never an address of this host */
    CHECK(!sync_peer_is_self("203.0.113.7:8001", "0.0.0.0:8001"), "not an address of this host");
}

static void test_a_wildcard_listen_is_named_by_its_route_to_the_origin(void)
{
    char name[BIM_PEER_ADDR_MAX + 1];

    sync_peer_self_name("0.0.0.0:8001", "127.0.0.1:9", name, sizeof(name));
    CHECK_STR(name, "127.0.0.1:8001");
    sync_peer_self_name("127.0.0.3:8001", "127.0.0.1:9", name, sizeof(name));
    CHECK_STR(name, "127.0.0.3:8001");
    sync_peer_self_name("0.0.0.0:8001", "nonsense", name, sizeof(name));
    CHECK_STR(name, "0.0.0.0:8001");
}

int main(void)
{
    RUN(test_the_listen_text_and_its_address_by_name_are_self);
    RUN(test_another_port_or_address_is_not_self);
    RUN(test_a_wildcard_listen_is_any_local_address_on_its_port);
    RUN(test_a_wildcard_listen_is_named_by_its_route_to_the_origin);
    return check_exit();
}
