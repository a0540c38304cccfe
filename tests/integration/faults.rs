//! Fault test: traffic keeps flowing while a backend is stopped and restarted. Loopback only,
//! bounded in count (5,000 requests) and time (every socket has a timeout).

use std::sync::mpsc;

use crate::support::*;

const CLIENTS: usize = 16;
const REQUESTS: usize = 5_000;

#[test]
fn no_request_is_lost_while_a_backend_is_stopped_and_restarted() {
    let a = webserver("a");
    let b = webserver("b");
    let c = webserver("c");
    let b_addr = b.addr;
    let dir = TempDir::new("faults");
    let config = format!(
        "{}fail_timeout = 0.2\nconnect_timeout = 1\ncache = off\n",
        backend_lines(&[a.addr, b.addr, c.addr])
    );
    let proxy = proxy(&dir, &config);
    let addr = proxy.addr;
    let (progress, finished) = mpsc::channel::<()>();
    let served: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let progress = progress.clone();
                s.spawn(move || {
                    let share = REQUESTS / CLIENTS + usize::from(i < REQUESTS % CLIENTS);
                    (0..share)
                        .map(|_| {
                            let reply = get(addr, "/index.html");
                            assert_eq!(reply.status, 200, "{}", reply.text());
                            assert!(reply.complete && reply.text().contains("Served by"));
                            let _ = progress.send(());
                            reply.header("x-served-by").unwrap().to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        drop(progress);
        // Stop b after 1,000 answers, bring it back after 3,000.
        finished.iter().take(1_000).for_each(drop);
        drop(b);
        finished.iter().take(2_000).for_each(drop);
        let b_again = webserver_on(b_addr, "b-restarted");
        let served: Vec<String> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        drop(b_again);
        served
    });
    assert_eq!(served.len(), REQUESTS);
    let count = |name: &str| served.iter().filter(|s| *s == name).count();
    assert!(count("b") > 0, "b never served before it stopped");
    assert!(
        count("b-restarted") > 0,
        "b got no traffic after it came back"
    );
    assert_eq!(
        count("a") + count("b") + count("c") + count("b-restarted"),
        REQUESTS
    );
}
