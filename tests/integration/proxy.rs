//! The proxy end to end: balancing, request rewriting, framing, errors, concurrency.

use crate::support::*;

#[test]
fn round_robin_cycles_through_three_backends_in_order() {
    let servers = [webserver("a"), webserver("b"), webserver("c")];
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let dir = TempDir::new("rr");
    // With the cache on, the first page would be stored and served five more times.
    let proxy = proxy(&dir, &format!("cache = off\n{}", backend_lines(&addrs)));
    let seen: Vec<String> = (0..6)
        .map(|_| {
            let reply = get(proxy.addr, "/");
            assert_eq!(reply.status, 200);
            reply.header("x-served-by").unwrap().to_string()
        })
        .collect();
    assert_eq!(seen, ["a", "b", "c", "a", "b", "c"]);
}
