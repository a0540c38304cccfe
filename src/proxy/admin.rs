//! Runtime control of the proxy: `POST {status_path}/ACTION`, answered by the proxy itself
//! and never forwarded, as HAProxy's runtime API and httpd's balancer-manager let an
//! operator act on a running server. The status page's buttons post here; so can curl.
//!
//! Who may act:
//! - only the addresses `status_allow` lets see the status page (others get 403);
//! - not another site's page (cross-site request forgery): a browser names the page a
//!   request comes from in `Origin` (RFC 6454 §7; browsers send it with every POST) or, older
//!   ones, in `Referer` (RFC 9110 §10.1.3). When `Origin` is present it must name the
//!   request's own host (RFC 9112 §3.2.2: an absolute-form target's, else `Host`); else when
//!   `Referer` is present its authority must. A request with neither, as curl or a script
//!   sends, cannot have come from a page, and is let through.
//! - not another site's page under this proxy's address (DNS rebinding: a name the attacker
//!   controls is made to resolve to 127.0.0.1, so its page, its `Origin` and its `Host` all
//!   name the attacker's site while the request reaches us from loopback). A request that
//!   names a page must therefore carry a `Host` no other site can take over: an IP address,
//!   `localhost` or a name under `.localhost` (RFC 6761 §6.3), or a name listed in
//!   `status_hosts`, as development servers check their allowed hosts.
//!
//! What it takes: a form body (`application/x-www-form-urlencoded`, what an HTML form
//! posts), at most [`MAX_FORM_BYTES`], read whole before the answer so the connection can
//! carry the next request. Names and values are decoded as the HTML standard's form
//! decoding does (`+` is a space, then `crate::http::percent`), strictly: a bad escape or
//! text that is not UTF-8 is a 400, never guessed at.
//!
//! One dispatch by ACTION (`dispatch`); an unknown one is a 404:
//! - `backends`: `backend=HOST:PORT&action=drain|disable|enable`, or `action=weight` with
//!   `weight=N` (1..=100); `pool=NAME` for a backend of a named pool. `drain` and `disable`
//!   take the backend out of rotation and close its idle pooled connections; requests in
//!   flight on it finish (see `balancer`).
//! - `purge`: `url=http://HOST/PATH` or `path=/PATH` (every host): the stored responses
//!   for it, every Vary variant, are removed (see `purge`); with the cache off, a 409.
//! - `reload`: read proxy.conf again and put it in force (see `reload`); a file with
//!   mistakes is refused with 422 and the mistakes, and the running configuration stays.
//! - `stop`: the graceful stop (see `reload`); the answer carries the proxy's process id in
//!   `Relevo-Pid`, so `proxy --stop` can wait for the process to end.
//!
//! The answer: `303 See Other` back to the status page, so a browser's form post ends on the
//! page it came from; or, when the request says `Accept: text/plain` (a command-line tool),
//! `200` with what was done. A refusal is a short `text/plain` with its 4xx status, either
//! way. Every action and every refusal is logged at info: who did what.

use std::io::BufReader;
use std::net::{IpAddr, SocketAddr};

use super::balancer::Admin;
use super::config::{host_without_port, Config, DEFAULT_POOL};
use super::generation::Generation;
use super::purge::{purge, Target};
use super::request_body;
use super::rewrite::client_host;
use super::status_page::{open_to, path_and_query, send};
use super::{Proxy, Record};
use crate::error::{Error, Result, Side};
use crate::http::authority::{absolute_form_parts, normalize_authority};
use crate::http::body::{request_framing, Framing};
use crate::http::percent::percent_decode;
use crate::http::{text_response, Request, Response};
use crate::proxy::config::{parse_weight, Backend, MAX_WEIGHT};

/// The header of the answer to `stop` that names the proxy's process.
pub const PID_HEADER: &str = "Relevo-Pid";
use crate::server::ClientStream;

/// Largest form body an admin POST may carry, in bytes (4 KiB): the longest form today is a
/// backend's address, an action and a weight, well under 200 bytes. Beyond it: 413.
pub const MAX_FORM_BYTES: u64 = 4 * 1024;

/// Why an admin request was not carried out: the status and a short reason (never the
/// client's own text).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    status: u16,
    why: String,
}

impl Refusal {
    pub(super) fn new(status: u16, why: impl Into<String>) -> Refusal {
        Refusal {
            status,
            why: why.into(),
        }
    }
}

/// What an action did, or why it was refused.
pub(super) type Outcome = std::result::Result<String, Refusal>;

/// The ACTION of a request for `{status_path}/ACTION`, if it is one.
pub(super) fn action<'r>(config: &Config, request: &'r Request) -> Option<&'r str> {
    let status_path = config.status_path.as_deref()?;
    let (path, _) = path_and_query(request);
    path.strip_prefix(status_path)?.strip_prefix('/')
}

impl Proxy {
    /// Answers `POST {status_path}/ACTION` (see the module docs): checks who asks and from
    /// where, reads the form, dispatches, logs, and answers. The record is marked internal
    /// (the status page's figures leave it out); the body is marked read once it is.
    ///
    /// # Errors
    /// A body that is malformed or larger than `MAX_FORM_BYTES` (answered 400 or 413 by the
    /// caller, connection closed), or a failed write to the client.
    pub(super) fn serve_admin(
        &self,
        gen: &Generation,
        client: &mut BufReader<ClientStream>,
        peer: SocketAddr,
        request: &Request,
        action: &str,
        record: &mut Record,
    ) -> Result<()> {
        let framing = request_framing(request).map_err(|e| Error::Parse(Side::Client, e))?;
        let outcome = match admit(&gen.config, peer, request) {
            Err(refusal) => Err(refusal),
            Ok(()) => {
                let body = request_body::read(client, request, framing, MAX_FORM_BYTES)?;
                record.body_consumed = body.is_complete();
                Form::from_request(request, &body.start)
                    .and_then(|form| self.dispatch(gen, action, &form))
            }
        };
        let target = request.request_line();
        match &outcome {
            Ok(done) => log::info!("{peer} \"{target}\": {done}"),
            Err(refused) => log::info!(
                "{peer} \"{target}\" refused ({}): {}",
                refused.status,
                refused.why
            ),
        }
        let body_read = record.body_consumed || framing == Framing::Empty;
        let stopping = action == "stop" && outcome.is_ok();
        record.sent.keep_alive = request.keep_alive() && body_read && !stopping;
        let (mut response, body) = admin_answer(&gen.config, request, outcome);
        if stopping {
            let pid = std::process::id().to_string();
            response.headers.append(PID_HEADER, pid);
        }
        let out = client.get_ref().tcp();
        send(out, request, response, &body, record)
    }

    /// The one dispatch by ACTION.
    fn dispatch(&self, gen: &Generation, action: &str, form: &Form) -> Outcome {
        match action {
            "backends" => backend_action(gen, form),
            "purge" => self.purge_action(gen, form),
            "reload" => self.reload(),
            "stop" => self.stop(&gen.config),
            _ => Err(Refusal::new(404, "no such action")),
        }
    }
}

impl Proxy {
    /// `purge`: remove what is stored for `url=` or `path=` (see `purge`).
    fn purge_action(&self, gen: &Generation, form: &Form) -> Outcome {
        let target = Target::from_fields(form.get("url"), form.get("path"))
            .map_err(|why| Refusal::new(400, why))?;
        let Some(cache) = &self.cache else {
            return Err(Refusal::new(409, "the cache is off: nothing is stored"));
        };
        let removed = purge(cache, gen, &target);
        self.stats.purged(removed);
        let (Target::Url(what) | Target::Path(what)) = &target;
        let hosts = if matches!(target, Target::Path(_)) {
            " on every host"
        } else {
            ""
        };
        let plural = if removed == 1 { "" } else { "s" };
        Ok(format!(
            "purged {what}{hosts}: {removed} stored response{plural} removed"
        ))
    }
}

/// Who may act, before anything is read: an address `status_allow` lets in, a POST, and
/// not another site's page.
fn admit(config: &Config, peer: SocketAddr, request: &Request) -> std::result::Result<(), Refusal> {
    if !open_to(config, peer) {
        return Err(Refusal::new(
            403,
            "the status page is not open to your address",
        ));
    }
    if request.method != "POST" {
        return Err(Refusal::new(405, "actions are taken with POST"));
    }
    same_site(request).map_err(|why| Refusal::new(403, why))?;
    let from_a_page =
        request.headers.get("origin").is_some() || request.headers.get("referer").is_some();
    if from_a_page && !trusted_host(client_host(request), &config.status_hosts) {
        return Err(Refusal::new(
            403,
            "a page may act only under an IP address, localhost or a name in status_hosts \
             (DNS rebinding)",
        ));
    }
    Ok(())
}

/// Whether the Host value `host` names this proxy in a way another site cannot take over
/// by DNS rebinding: an IP address, `localhost` or a name under it, or a name in `listed`
/// (lower case, as `status_hosts` keeps them).
fn trusted_host(host: &str, listed: &[String]) -> bool {
    let authority = normalize_authority(host);
    let name = host_without_port(&authority);
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || listed.iter().any(|allowed| allowed == name)
}

/// `backends`: drain, disable, enable or reweight one backend of a pool (`pool=NAME`, the
/// default pool when not given).
fn backend_action(gen: &Generation, form: &Form) -> Outcome {
    let pool = form.get("pool").unwrap_or(DEFAULT_POOL);
    let upstreams = gen
        .pools
        .iter()
        .find(|p| p.name == pool)
        .ok_or_else(|| Refusal::new(404, "pool: no such pool in proxy.conf"))?;
    let balancer = &upstreams.balancer;
    let wanted: Backend = form
        .require("backend")?
        .parse()
        .map_err(|_| Refusal::new(400, "backend: expected HOST:PORT as in proxy.conf"))?;
    let id = balancer
        .find(&wanted)
        .ok_or_else(|| Refusal::new(404, "backend: no such backend in proxy.conf"))?;
    let name = &upstreams.labels[id];
    let out_of_rotation = |admin| {
        balancer.set_admin(id, admin);
        upstreams.close_idle(id)
    };
    match form.require("action")? {
        "drain" => {
            let closed = out_of_rotation(Admin::Draining);
            let active = balancer.in_flight(id);
            Ok(format!(
                "backend {name} draining: no new requests, {active} in flight finish, \
                     {closed} idle connections closed"
            ))
        }
        "disable" => {
            let closed = out_of_rotation(Admin::Disabled);
            Ok(format!(
                "backend {name} disabled: no new requests, {closed} idle connections closed"
            ))
        }
        "enable" => {
            balancer.set_admin(id, Admin::Active);
            Ok(format!("backend {name} enabled: back in rotation"))
        }
        "weight" => {
            let expected = || format!("weight: expected a whole number 1..={MAX_WEIGHT}");
            let weight =
                parse_weight(form.require("weight")?).map_err(|_| Refusal::new(400, expected()))?;
            let old = balancer.set_weight(id, weight).unwrap_or(weight);
            Ok(format!("backend {name} weight {old} -> {weight}"))
        }
        _ => Err(Refusal::new(
            400,
            "action: expected drain, disable, enable or weight",
        )),
    }
}

/// The response to an admin request: 303 to the status page, or the result as text
/// when asked for; a refusal as text with its status.
fn admin_answer(config: &Config, request: &Request, outcome: Outcome) -> (Response, Vec<u8>) {
    match outcome {
        Ok(done) if wants_text(request) => {
            let mut response = Response::new(200);
            response
                .headers
                .append("Content-Type", "text/plain; charset=utf-8");
            (response, format!("{done}\n").into_bytes())
        }
        Ok(done) => {
            let (mut response, body) = text_response(303, &done);
            let page = config.status_path.as_deref().unwrap_or("/");
            response.headers.append("Location", page);
            (response, body)
        }
        Err(refused) => {
            let (mut response, body) = text_response(refused.status, &refused.why);
            if refused.status == 405 {
                response.headers.append("Allow", "POST");
            }
            (response, body)
        }
    }
}

/// Whether the client asked for a plain-text answer (`Accept: text/plain`, parameters
/// ignored), as the command-line tools do; browsers list HTML first and get the 303.
fn wants_text(request: &Request) -> bool {
    request.headers.list("accept").any(|range| {
        range
            .split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/plain"))
    })
}

/// The cross-site check (see the module docs): `Origin` when present, else `Referer` when
/// present, must name the request's own host; a request with neither passes.
fn same_site(request: &Request) -> std::result::Result<(), &'static str> {
    let host = normalize_authority(client_host(request));
    if let Some(origin) = request.headers.get("origin") {
        // serialized-origin = scheme "://" host [ ":" port ], or "null" (RFC 6454 §6.2).
        let authority = origin.split_once("://").map(|(_, authority)| authority);
        return match authority {
            Some(a) if !host.is_empty() && normalize_authority(a) == host => Ok(()),
            _ => Err("cross-site request refused: Origin is not this proxy"),
        };
    }
    if let Some(referer) = request.headers.get("referer") {
        return match absolute_form_parts(referer) {
            Some((a, _)) if !host.is_empty() && normalize_authority(a) == host => Ok(()),
            _ => Err("cross-site request refused: Referer is not this proxy"),
        };
    }
    Ok(())
}

/// A form body's fields, decoded.
#[derive(Debug, Default, PartialEq, Eq)]
struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// The fields of `body`, when `request` says it is a form (an empty body needs no
    /// Content-Type).
    fn from_request(request: &Request, body: &[u8]) -> std::result::Result<Form, Refusal> {
        let media = request
            .headers
            .get("content-type")
            .and_then(|t| t.split(';').next())
            .map(str::trim);
        match media {
            Some(m) if m.eq_ignore_ascii_case("application/x-www-form-urlencoded") => {}
            None if body.is_empty() => {}
            _ => {
                let why = "expected a form (application/x-www-form-urlencoded)";
                return Err(Refusal::new(415, why));
            }
        }
        Form::parse(body)
    }

    /// The `application/x-www-form-urlencoded` parser (the URL Standard's, strict):
    /// `name=value` pairs separated by `&`, empty pairs skipped, a pair without `=` a name
    /// with an empty value; in each, `+` is a space and `%XX` the byte it spells. A name
    /// given twice is refused, so which one counts is never a guess.
    fn parse(body: &[u8]) -> std::result::Result<Form, Refusal> {
        let mut form = Form::default();
        for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let (name, value) = (decode(name)?, decode(value)?);
            if form.get(&name).is_some() {
                return Err(Refusal::new(400, "a form field is given twice"));
            }
            form.fields.push((name, value));
        }
        Ok(form)
    }

    /// The value of field `name`, if given.
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of field `name`, or a 400 naming it.
    fn require(&self, name: &'static str) -> std::result::Result<&str, Refusal> {
        self.get(name)
            .ok_or_else(|| Refusal::new(400, format!("missing form field `{name}`")))
    }
}

/// One name or value of a form: `+` is a space, then percent-decoding, then UTF-8.
fn decode(raw: &[u8]) -> std::result::Result<String, Refusal> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let bytes = percent_decode(&spaced)
        .ok_or_else(|| Refusal::new(400, "a form field has a malformed %-escape"))?;
    String::from_utf8(bytes).map_err(|_| Refusal::new(400, "a form field is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{read_request, Limits};

    fn request(raw: &str) -> Request {
        read_request(&mut raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
    }

    fn post(fields: &str) -> Request {
        request(&format!(
            "POST /relevo/status/backends HTTP/1.1\r\nHost: localhost:8080\r\n{fields}\r\n"
        ))
    }

    #[test]
    fn forms_decode_plus_as_space_and_percent_escapes_strictly() {
        let form =
            Form::parse(b"backend=127.0.0.1%3A8082&action=drain&&note=a+b%2Bc&flag").unwrap();
        assert_eq!(form.get("backend"), Some("127.0.0.1:8082"));
        assert_eq!(form.get("action"), Some("drain"));
        assert_eq!(form.get("note"), Some("a b+c"));
        assert_eq!(form.get("flag"), Some(""));
        assert_eq!(form.get("missing"), None);
        assert_eq!(Form::parse(b"").unwrap(), Form::default());
        for bad in [&b"a=%zz"[..], b"a=%4", b"%=1", b"a=\xff", b"a=1&a=2"] {
            assert_eq!(Form::parse(bad).unwrap_err().status, 400, "{bad:?}");
        }
        assert_eq!(
            Form::default().require("backend").unwrap_err().why,
            "missing form field `backend`"
        );
    }

    #[test]
    fn a_body_must_be_a_form_and_an_empty_one_needs_no_type() {
        let typed = post("Content-Type: application/x-www-form-urlencoded; charset=UTF-8\r\n");
        assert!(Form::from_request(&typed, b"a=1").is_ok());
        let untyped = post("");
        assert!(Form::from_request(&untyped, b"").is_ok());
        assert_eq!(
            Form::from_request(&untyped, b"a=1").unwrap_err().status,
            415
        );
        let json = post("Content-Type: application/json\r\n");
        assert_eq!(Form::from_request(&json, b"{}").unwrap_err().status, 415);
    }

    #[test]
    fn a_post_from_another_site_is_refused_and_one_from_no_page_is_not() {
        assert_eq!(same_site(&post("")), Ok(()), "curl sends neither");
        assert_eq!(
            same_site(&post("Origin: http://localhost:8080\r\n")),
            Ok(())
        );
        assert_eq!(
            same_site(&post("Origin: http://LocalHost:8080\r\n")),
            Ok(())
        );
        assert_eq!(
            same_site(&post("Referer: http://localhost:8080/relevo/status\r\n")),
            Ok(())
        );
        for foreign in [
            "Origin: http://evil.example\r\n",
            "Origin: http://localhost:8081\r\n",
            "Origin: null\r\n",
            "Origin: http://evil.example\r\nReferer: http://localhost:8080/relevo/status\r\n",
            "Referer: http://evil.example/page\r\n",
            "Referer: /relative\r\n",
            "Referer: http://localhost:8080@evil.example/\r\n",
        ] {
            assert!(same_site(&post(foreign)).is_err(), "{foreign}");
        }
        // Origin is what counts when both are there.
        assert_eq!(
            same_site(&post(
                "Origin: http://localhost:8080\r\nReferer: http://elsewhere/\r\n"
            )),
            Ok(())
        );
        // An absolute-form target names the host, as for every other purpose.
        let absolute = request(
            "POST http://proxy.example/relevo/status/backends HTTP/1.1\r\nHost: localhost:8080\r\n\
             Origin: http://proxy.example\r\n\r\n",
        );
        assert_eq!(same_site(&absolute), Ok(()));
    }

    #[test]
    fn a_page_acts_only_under_a_host_no_other_site_can_take_over() {
        let listed = ["proxy.example".to_string()];
        for trusted in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::1]",
            "10.0.0.7",
            "localhost:8080",
            "LocalHost",
            "class.localhost:8080",
            "proxy.example:8080",
            "Proxy.Example",
        ] {
            assert!(trusted_host(trusted, &listed), "{trusted}");
        }
        for rebound in [
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "proxy.example.evil.example",
            "2130706433",
            "",
        ] {
            assert!(!trusted_host(rebound, &listed), "{rebound}");
        }
        // The whole check: a page under a rebound name is refused from loopback, while curl
        // under that name (no page) and a page under localhost are let in.
        let config = Config::default();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let rebound = |fields: &str| {
            request(&format!(
                "POST /relevo/status/stop HTTP/1.1\r\nHost: evil.example:8080\r\n{fields}\r\n"
            ))
        };
        let page = rebound("Origin: http://evil.example:8080\r\n");
        assert_eq!(admit(&config, peer, &page).unwrap_err().status, 403);
        let page = rebound("Referer: http://evil.example:8080/\r\n");
        assert_eq!(admit(&config, peer, &page).unwrap_err().status, 403);
        assert!(admit(&config, peer, &rebound("")).is_ok());
        let local = post("Origin: http://localhost:8080\r\n");
        assert!(admit(&config, peer, &local).is_ok());
    }

    #[test]
    fn command_line_tools_ask_for_text_and_browsers_do_not() {
        assert!(wants_text(&post("Accept: text/plain\r\n")));
        assert!(wants_text(&post(
            "Accept: application/json, TEXT/PLAIN;q=0.5\r\n"
        )));
        assert!(!wants_text(&post(
            "Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n"
        )));
        assert!(!wants_text(&post("")));
    }

    fn proxy() -> Proxy {
        let config = crate::proxy::config::Config {
            access_log: None,
            cache: false,
            backends: vec![
                "127.0.0.1:8081".parse().unwrap(),
                "127.0.0.1:8082".parse().unwrap(),
            ],
            ..Default::default()
        };
        Proxy::new(config).unwrap()
    }

    #[test]
    fn the_action_is_what_follows_the_status_path() {
        let proxy = proxy();
        let action = |target: &str| {
            let raw = format!("POST {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            action(&proxy.generation().config, &request(&raw)).map(str::to_string)
        };
        assert_eq!(action("/relevo/status/backends"), Some("backends".into()));
        assert_eq!(
            action("/relevo/status/backends?x=1"),
            Some("backends".into())
        );
        assert_eq!(action("http://h/relevo/status/stop"), Some("stop".into()));
        assert_eq!(action("/relevo/status/"), Some(String::new()));
        assert_eq!(action("/relevo/status"), None, "the page itself");
        assert_eq!(action("/relevo/statusbackends"), None);
        assert_eq!(action("/other/backends"), None);
    }

    #[test]
    fn backend_actions_change_the_rotation_and_refuse_what_is_wrong() {
        let proxy = proxy();
        let gen = proxy.generation();
        let act =
            |body: &str| proxy.dispatch(&gen, "backends", &Form::parse(body.as_bytes()).unwrap());
        let balancer = &gen.pools[0].balancer;
        assert_eq!(
            act("backend=127.0.0.1:8082&action=drain").unwrap(),
            "backend 127.0.0.1:8082 draining: no new requests, 0 in flight finish, 0 idle \
             connections closed"
        );
        assert!(!balancer.in_rotation(1) && balancer.in_rotation(0));
        assert!(act("backend=127.0.0.1:8082&action=enable").is_ok());
        assert!(balancer.in_rotation(1));
        assert!(act("backend=127.0.0.1:8081&action=disable").is_ok());
        assert_eq!(balancer.view()[0].admin, Admin::Disabled);
        assert_eq!(
            act("backend=127.0.0.1:8081&action=weight&weight=7").unwrap(),
            "backend 127.0.0.1:8081 weight 1 -> 7"
        );
        assert_eq!(balancer.view()[0].weight, 7);
        for (body, status) in [
            ("action=drain", 400),
            ("backend=127.0.0.1:9999&action=drain", 404),
            ("backend=nonsense&action=drain", 400),
            ("backend=127.0.0.1:8081", 400),
            ("backend=127.0.0.1:8081&action=explode", 400),
            ("backend=127.0.0.1:8081&action=weight", 400),
            ("backend=127.0.0.1:8081&action=weight&weight=0", 400),
            ("backend=127.0.0.1:8081&action=weight&weight=101", 400),
        ] {
            assert_eq!(act(body).unwrap_err().status, status, "{body}");
        }
        assert_eq!(
            balancer.view()[0].weight,
            7,
            "a refused weight changes nothing"
        );
        let unknown = proxy.dispatch(&gen, "explode", &Form::default());
        assert_eq!(unknown.unwrap_err().status, 404);
    }

    #[test]
    fn a_backend_of_a_named_pool_is_found_by_its_pool() {
        let config = crate::proxy::config::Config {
            access_log: None,
            cache: false,
            backends: vec!["127.0.0.1:8081".parse().unwrap()],
            pools: vec![crate::proxy::config::Pool {
                name: "api".to_string(),
                backends: vec!["127.0.0.1:8081".parse().unwrap()],
            }],
            ..Default::default()
        };
        let proxy = Proxy::new(config).unwrap();
        let gen = proxy.generation();
        let act =
            |body: &str| proxy.dispatch(&gen, "backends", &Form::parse(body.as_bytes()).unwrap());
        assert_eq!(
            act("pool=api&backend=127.0.0.1:8081&action=disable").unwrap(),
            "backend api/127.0.0.1:8081 disabled: no new requests, 0 idle connections closed"
        );
        assert!(
            !gen.pools[1].balancer.in_rotation(0),
            "the api pool's backend"
        );
        assert!(
            gen.pools[0].balancer.in_rotation(0),
            "the same address in the default pool"
        );
        assert_eq!(
            act("pool=web&backend=127.0.0.1:8081&action=drain")
                .unwrap_err()
                .status,
            404
        );
    }

    #[test]
    fn reload_and_stop_need_a_proxy_started_by_run() {
        let proxy = proxy();
        let gen = proxy.generation();
        for action in ["reload", "stop"] {
            let refused = proxy.dispatch(&gen, action, &Form::default()).unwrap_err();
            assert_eq!(refused.status, 409, "{action}");
        }
    }

    #[test]
    fn the_answer_is_a_303_to_the_page_or_text_when_asked() {
        let config = proxy().generation().config.clone();
        let (response, _) = admin_answer(&config, &post(""), Ok("done".to_string()));
        assert_eq!(response.status, 303);
        assert_eq!(response.headers.get("location"), Some("/relevo/status"));
        let (response, body) = admin_answer(
            &config,
            &post("Accept: text/plain\r\n"),
            Ok("done".to_string()),
        );
        assert_eq!(response.status, 200);
        assert_eq!(body, b"done\n");
        let refused = Refusal::new(405, "actions are taken with POST");
        let (response, body) = admin_answer(&config, &post("Accept: text/plain\r\n"), Err(refused));
        assert_eq!(response.status, 405);
        assert_eq!(response.headers.get("allow"), Some("POST"));
        assert_eq!(
            body,
            b"405 Method Not Allowed: actions are taken with POST\n"
        );
    }
}
