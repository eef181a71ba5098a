//! Tests of routing, grouping, inhibition, silences and the outbox.

use std::collections::BTreeMap;

use super::email::{Content, EmailConfig, EmailSender, Item, Rendered, Templates, escape_html};
use super::*;
use crate::alert::{Evidence, Notification, State};
use crate::rules::Severity;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(super) fn note(rule: &str, sev: Severity, l: &[(&str, &str)], state: State) -> Notification {
    let labels = labels(l);
    let id = crate::alert::alert_id(rule, &labels, 0);
    Notification {
        notification_id: format!("{id}:{}", state.as_str()),
        id,
        rule_id: rule.to_owned(),
        name: Some(format!("{rule} name")),
        state,
        severity: sev,
        labels,
        annotations: BTreeMap::from([("summary".to_owned(), "a summary".to_owned())]),
        window_start: "2026-01-01T00:00:00.000Z".into(),
        window_end: "2026-01-01T00:01:00.000Z".into(),
        starts_at: "2026-01-01T00:01:00.000Z".into(),
        ends_at: (state == State::Resolved).then(|| "2026-01-01T00:05:00.000Z".into()),
        evidence: Evidence {
            values: serde_json::Map::new(),
            sample_request_ids: vec!["r1".into()],
            window_records: 10,
            window_bad_records: 0,
            window_late_records: 0,
            sources: Vec::new(),
            fired: None,
        },
        tags: BTreeMap::new(),
        at_ms: 0,
    }
}

fn config(yaml: &str) -> NotifyConfig {
    serde_yaml::from_str(yaml).unwrap()
}

const TREE: &str = r#"
receivers:
  - {name: team, email: {to: a@example.com, from: d@example.com, smarthost: "127.0.0.1:1", tls: none}}
  - {name: oncall, email: {to: b@example.com, from: d@example.com, smarthost: "127.0.0.1:1", tls: none}}
  - {name: audit, email: {to: c@example.com, from: d@example.com, smarthost: "127.0.0.1:1", tls: none}}
route:
  receiver: team
  group_by: [alertname, model]
  routes:
    - matchers: ['severity="critical"']
      receiver: oncall
      group_wait: 0s
      continue: true
    - matchers: ['alertname=~"extraction\..*"']
      receiver: audit
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity=~"low|medium"']
    equal: [client_id]
silences:
  - matchers: ['client_id="batch-7"']
    ends_at: "2100-01-01T00:00:00Z"
  - matchers: ['client_id="old"']
    ends_at: "2000-01-01T00:00:00Z"
"#;

#[test]
fn matchers_parse_as_in_alertmanager() {
    let l = labels(&[("a", "x1"), ("b", "")]);
    for (m, want) in [
        ("a=\"x1\"", true),
        ("a = x1", true),
        ("a!=\"x1\"", false),
        ("a=~\"x[0-9]\"", true),
        ("a=~\"x\"", false), // anchored
        ("a!~\"y.*\"", true),
        ("b=\"\"", true),
        ("missing=\"\"", true),
        ("c=\"q\\\"uote\"", false),
    ] {
        assert_eq!(Matcher::parse(m).unwrap().matches(&l), want, "{m}");
    }
    for bad in ["", "=x", "a", "a==\"x", "a=~\"(\"", "a=\"open"] {
        assert!(Matcher::parse(bad).is_err(), "{bad} should be rejected");
    }
}

#[test]
fn a_matcher_string_may_hold_several_matchers_as_in_alertmanager() {
    use super::route::{legacy_matchers, parse_all};
    let l: BTreeMap<String, String> = [("a", "x"), ("b", "y,z"), ("c", "q\"u")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let all = |text: &str| {
        parse_all(&[text.to_owned()]).map(|ms| (ms.len(), ms.iter().all(|m| m.matches(&l))))
    };
    assert_eq!(all("a=\"x\", b=\"y,z\"").unwrap(), (2, true));
    assert_eq!(all("{a=\"x\", b=~\"y.*\",}").unwrap(), (2, true));
    assert_eq!(all("a=x, b=\"nope\"").unwrap(), (2, false));
    assert_eq!(all("c=\"q\\\"u\", a!=\"w\"").unwrap(), (2, true));
    for bad in ["a=\"x\",, b=\"y\"", "{a=\"x\"", "a=\"x\", =y", ","] {
        assert!(all(bad).is_err(), "{bad} should be refused");
    }
    // `match:` and `match_re:` as Alertmanager's older configs write them.
    let eq = [("a".to_owned(), "x".to_owned())].into_iter().collect();
    let re = [("b".to_owned(), "y,.".to_owned())].into_iter().collect();
    let ms = parse_all(&legacy_matchers(&eq, &re)).unwrap();
    assert_eq!(ms.len(), 2);
    assert!(ms.iter().all(|m| m.matches(&l)));
}

#[test]
fn routes_follow_the_tree_with_continue_and_defaults() {
    let r = Router::new(&config(TREE)).unwrap();
    let rx = |l: &BTreeMap<String, String>| -> Vec<String> {
        r.routes_for(&[], l)
            .into_iter()
            .map(|i| r.route(i).receiver.clone())
            .collect()
    };
    let critical_extraction = labels(&[("alertname", "extraction.x"), ("severity", "critical")]);
    assert_eq!(rx(&critical_extraction), ["oncall", "audit"]);
    assert_eq!(
        rx(&labels(&[("alertname", "flood"), ("severity", "critical")])),
        ["oncall"]
    );
    assert_eq!(
        rx(&labels(&[("alertname", "flood"), ("severity", "low")])),
        ["team"]
    );
    // Inherited settings and the node's own.
    let oncall = r.routes_for(&[], &critical_extraction)[0];
    assert_eq!(r.route(oncall).group_wait, Duration::ZERO);
    assert_eq!(r.route(oncall).group_by, ["alertname", "model"]);
    assert_eq!(
        r.route(oncall).repeat_interval,
        Duration::from_secs(4 * 3600)
    );
    // A rule's own route names receivers directly.
    let direct = r.routes_for(&["audit".into()], &critical_extraction);
    assert_eq!(direct.len(), 1);
    assert_eq!(r.route(direct[0]).receiver, "audit");
}

#[test]
fn inhibition_needs_a_firing_source_with_equal_labels() {
    let r = Router::new(&config(TREE)).unwrap();
    let warn = labels(&[("severity", "medium"), ("client_id", "c1")]);
    let crit_same = labels(&[("severity", "critical"), ("client_id", "c1")]);
    let crit_other = labels(&[("severity", "critical"), ("client_id", "c2")]);
    assert!(r.inhibited(&warn, [&crit_same].into_iter()));
    assert!(!r.inhibited(&warn, [&crit_other].into_iter()));
    assert!(!r.inhibited(&crit_same, [&crit_same].into_iter()));
}

#[test]
fn silences_match_and_expire() {
    let r = Router::new(&config(TREE)).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    assert!(r.silenced(&labels(&[("client_id", "batch-7")]), now));
    assert!(!r.silenced(&labels(&[("client_id", "old")]), now));
    assert!(!r.silenced(&labels(&[("client_id", "c1")]), now));
}

#[test]
fn bad_routing_config_says_what_to_fix() {
    let no_root = "receivers: [{name: a, email: {to: a@x.io, from: b@x.io, smarthost: 'h:25'}}]";
    assert!(
        config(no_root)
            .validate(std::iter::empty())
            .unwrap_err()
            .contains("notify.route")
    );
    let unknown = format!("{no_root}\nroute: {{receiver: zz}}");
    let e = config(&unknown).validate(std::iter::empty()).unwrap_err();
    assert!(e.contains("\"zz\"") && e.contains("a"), "{e}");
    let ok = format!("{no_root}\nroute: {{receiver: a}}");
    let rule_route = vec!["nope".to_owned()];
    let e = config(&ok)
        .validate([("r1", rule_route.as_slice())].into_iter())
        .unwrap_err();
    assert!(e.contains("rule r1") && e.contains("nope"), "{e}");
    let bad_silence = format!("{ok}\nsilences: [{{matchers: ['a=b'], ends_at: tomorrow}}]");
    let e = config(&bad_silence)
        .validate(std::iter::empty())
        .unwrap_err();
    assert!(e.contains("RFC 3339"), "{e}");
}

fn sender(extra: &str) -> EmailSender {
    let c: EmailConfig = serde_yaml::from_str(&format!(
        "{{to: 'a@example.com, b@example.com', from: d@example.com, smarthost: '127.0.0.1:1', tls: none{extra}}}"
    ))
    .unwrap();
    EmailSender::new("t", &c).unwrap()
}

fn decoded(p: &super::email::Prepared) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&p.bytes)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn traffic_text_cannot_inject_headers_html_or_template_code() {
    let s = sender("");
    let evil = "c1\r\nBcc: victim@example.com\r\n<script>alert(1)</script>{{ receiver }}";
    let n = note(
        "extraction.coverage",
        Severity::High,
        &[("client_id", evil)],
        State::Firing,
    );
    let group = labels(&[("client_id", evil)]);
    let c = Content {
        receiver: "team",
        group: &group,
        items: vec![Item {
            state: "firing",
            n: &n,
            resolved: None,
        }],
        message_id: "<m1@inferwatch>".into(),
        thread_id: "<m1@inferwatch>".into(),
    };
    let t = Rendered::load(&Templates::default(), "t").unwrap();
    let (subject, text, html) = t.render(&c);
    assert!(
        !subject.contains('\n') && !subject.contains('\r'),
        "{subject}"
    );
    assert!(subject.starts_with("[inferwatch] FIRING:1 HIGH: extraction.coverage"));
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;"));
    assert!(!text.contains("\r\nBcc"), "{text}");
    // The value's `{{ receiver }}` is text, not a template.
    assert!(text.contains("{{ receiver }}"));
    let raw = decoded(&s.prepare(&c).unwrap());
    let headers = &raw[..raw.find("\r\n\r\n").unwrap()];
    assert!(
        !headers.lines().any(|l| l.starts_with("Bcc")),
        "injected header in:\n{headers}"
    );
    assert!(headers.contains("Message-ID: <m1@inferwatch>"));
    assert_eq!(
        escape_html("<a href='x'>&\""),
        "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
    );
}

#[test]
fn user_templates_are_checked_for_unknown_names() {
    let t = Templates {
        subject: Some("{{ status }} {{ nope }}".into()),
        ..Templates::default()
    };
    let e = Rendered::load(&t, "notify.receivers.x.email").unwrap_err();
    assert!(e.contains("{{ nope }}") && e.contains("status"), "{e}");
}

#[test]
fn passwords_come_from_env_or_file_and_plain_text_is_for_localhost() {
    let c: EmailConfig = serde_yaml::from_str(
        "{to: a@x.io, from: b@x.io, smarthost: 'mail.example.com:25', tls: none, username: u, password_env: DW_TEST_UNSET_PASSWORD}",
    )
    .unwrap();
    let e = EmailSender::new("x", &c).err().unwrap();
    assert!(e.contains("DW_TEST_UNSET_PASSWORD"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret-value\n").unwrap();
    let c: EmailConfig = serde_yaml::from_str(&format!(
        "{{to: a@x.io, from: b@x.io, smarthost: 'mail.example.com:25', tls: none, username: u, password_file: {}}}",
        pw.display()
    ))
    .unwrap();
    let e = EmailSender::new("x", &c).err().unwrap();
    assert!(e.contains("clear text") && !e.contains("s3cret"), "{e}");
}

/// Grouping, resolved notices and what is said when, without a server: the composed
/// messages are read back from the receiver's queue.
#[test]
fn groups_compose_one_message_per_group_and_never_repeat_a_change() {
    use super::dispatch::tests_support::Harness;
    let mut h = Harness::new(
        r#"
receivers:
  - {name: team, email: {to: a@example.com, from: d@example.com, smarthost: "127.0.0.1:1", tls: none, send_resolved: true}}
route: {receiver: team, group_by: [alertname], group_wait: 1h}
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="low"']
    equal: [client_id]
silences:
  - matchers: ['client_id="muted"']
    ends_at: "2100-01-01T00:00:00Z"
"#,
    );
    let a1 = note(
        "flood",
        Severity::High,
        &[("client_id", "a1")],
        State::Firing,
    );
    let a2 = note(
        "flood",
        Severity::High,
        &[("client_id", "a2")],
        State::Firing,
    );
    let muted = note(
        "flood",
        Severity::High,
        &[("client_id", "muted")],
        State::Firing,
    );
    let b1 = note(
        "probe",
        Severity::Low,
        &[("client_id", "b1")],
        State::Firing,
    );
    let b1_crit = note(
        "crit",
        Severity::Critical,
        &[("client_id", "b1")],
        State::Firing,
    );
    let short = note(
        "probe",
        Severity::Low,
        &[("client_id", "b2")],
        State::Firing,
    );
    let short_end = note(
        "probe",
        Severity::Low,
        &[("client_id", "b2")],
        State::Resolved,
    );
    let pending = note(
        "probe",
        Severity::Low,
        &[("client_id", "b3")],
        State::Pending,
    );
    h.apply(&[
        &a1, &a2, &muted, &b1, &b1_crit, &short, &short_end, &pending,
    ]);
    // group_wait has not passed: nothing yet.
    assert!(h.compose(false).is_empty());
    let sent = h.compose(true);
    let subjects: Vec<String> = sent.iter().map(|m| m.subject.clone()).collect();
    assert_eq!(sent.len(), 3, "{subjects:?}");
    let flood = sent.iter().find(|m| m.subject.contains("flood")).unwrap();
    assert!(flood.subject.contains("FIRING:2"), "{}", flood.subject);
    let mut ids = flood.notifications.clone();
    ids.sort();
    let mut want = vec![a1.notification_id.clone(), a2.notification_id.clone()];
    want.sort();
    assert_eq!(ids, want);
    // b1 (low) is inhibited by the critical alert of the same client; the short alert
    // that fired and resolved before the send is still reported.
    let probe = sent.iter().find(|m| m.subject.contains("probe")).unwrap();
    assert_eq!(probe.items, ["fired and resolved probe client_id=b2"]);
    assert_eq!(
        probe.notifications,
        [
            short.notification_id.clone(),
            short_end.notification_id.clone()
        ]
    );
    // The critical alert has its own group.
    assert!(
        sent.iter().any(|m| m.subject.contains("CRITICAL: crit")),
        "{subjects:?}"
    );
    // Applying the same lines again (a rewind after a restart) says nothing new.
    h.apply(&[&a1, &a2, &short, &short_end]);
    assert!(h.compose(true).is_empty());
    // Resolution of a notified alert: a resolved notice in the same thread.
    let a1_end = note(
        "flood",
        Severity::High,
        &[("client_id", "a1")],
        State::Resolved,
    );
    h.apply(&[&a1_end]);
    let sent2 = h.compose(true);
    assert_eq!(sent2.len(), 1);
    assert!(
        sent2[0].subject.contains("FIRING:1"),
        "{}",
        sent2[0].subject
    );
    let mut items = sent2[0].items.clone();
    items.sort();
    assert_eq!(
        items,
        [
            "resolved flood client_id=a1",
            "still firing flood client_id=a2"
        ]
    );
    assert_eq!(
        sent2[0].notifications,
        std::slice::from_ref(&a1_end.notification_id)
    );
    assert_eq!(
        sent2[0].in_reply_to.as_deref(),
        Some(flood.message_id.as_str())
    );
    assert_ne!(sent2[0].message_id, flood.message_id);
}

/// group_wait, group_interval and repeat_interval on the wall clock, without draining.
#[test]
fn timers_decide_when_a_group_is_mailed_again() {
    use super::dispatch::tests_support::Harness;
    let mut h = Harness::new(
        r#"
receivers:
  - {name: team, email: {to: a@example.com, from: d@example.com, smarthost: "127.0.0.1:1", tls: none}}
route: {receiver: team, group_by: [alertname], group_wait: 10s, group_interval: 1m, repeat_interval: 1h}
"#,
    );
    let t0 = chrono::Utc::now().timestamp_millis();
    let s = 1000;
    let a = note(
        "flood",
        Severity::High,
        &[("client_id", "a")],
        State::Firing,
    );
    h.apply(&[&a]);
    assert!(
        h.compose_at(t0 + 5 * s, false).is_empty(),
        "before group_wait"
    );
    let first = h.compose_at(t0 + 11 * s, false);
    assert_eq!(first.len(), 1);
    let sent = t0 + 11 * s;
    // A new alert in the group waits for group_interval after the last message.
    let b = note(
        "flood",
        Severity::High,
        &[("client_id", "b")],
        State::Firing,
    );
    h.apply(&[&b]);
    assert!(
        h.compose_at(sent + 30 * s, false).is_empty(),
        "within group_interval"
    );
    let second = h.compose_at(sent + 61 * s, false);
    assert_eq!(second.len(), 1);
    let mut items = second[0].items.clone();
    items.sort();
    assert_eq!(
        items,
        ["firing flood client_id=b", "still firing flood client_id=a"]
    );
    // Nothing new: the still firing alerts again after repeat_interval, not before.
    let last = sent + 61 * s;
    assert!(h.compose_at(last + 30 * 60 * s, false).is_empty());
    let repeat = h.compose_at(last + 3601 * s, false);
    assert_eq!(repeat.len(), 1);
    assert!(
        repeat[0].notifications.is_empty(),
        "a repeat carries no new change"
    );
    assert_eq!(repeat[0].items.len(), 2);
    // Without send_resolved, a resolution is not mailed and the group ends quietly.
    let a_end = note(
        "flood",
        Severity::High,
        &[("client_id", "a")],
        State::Resolved,
    );
    let b_end = note(
        "flood",
        Severity::High,
        &[("client_id", "b")],
        State::Resolved,
    );
    h.apply(&[&a_end, &b_end]);
    assert!(h.compose_at(last + 7200 * s, true).is_empty());
}

#[test]
fn api_silences_mute_like_config_silences() {
    let api = std::sync::Arc::new(crate::notify::silence::Silences::default());
    let r = Router::new(&config(TREE))
        .unwrap()
        .with_silences(api.clone());
    // Times are given, not read from the clock between two lines: a loaded machine may
    // take any time from one line to the next.
    let at = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_millis()
    };
    let l = labels(&[("client_id", "c9"), ("alertname", "flood")]);
    let other = labels(&[("client_id", "c8"), ("alertname", "flood")]);
    assert!(!r.silenced(&l, at("2050-01-01T00:00:00Z")));
    let id = api
        .create(crate::notify::silence::NewSilence {
            matchers: vec!["client_id=\"c9\"".into()],
            starts_at: Some("2000-01-01T00:00:00Z".into()),
            ends_at: "2100-01-01T00:00:00Z".into(),
            comment: String::new(),
            created_by: String::new(),
        })
        .unwrap();
    assert!(!r.silenced(&l, at("1999-12-31T23:59:59.999Z")));
    assert!(r.silenced(&l, at("2000-01-01T00:00:00Z")));
    assert!(r.silenced(&l, at("2099-12-31T23:59:59.999Z")));
    assert!(!r.silenced(&other, at("2050-01-01T00:00:00Z")));
    assert!(!r.silenced(&l, at("2100-01-01T00:00:00Z")));
    // Expiring ends it now: silenced no longer from the moment after.
    assert_eq!(
        api.expire(&id).unwrap(),
        crate::notify::silence::Expired::Now
    );
    let after = chrono::Utc::now().timestamp_millis();
    assert!(!r.silenced(&l, after));
    assert!(r.silenced(&l, at("2000-01-01T00:00:00Z")));
}

#[test]
fn config_and_api_silences_live_in_one_store_and_a_reload_replaces_only_the_configs() {
    use crate::notify::silence::{Expired, NewSilence, Silences};
    let store = std::sync::Arc::new(Silences::default());
    let api_id = store
        .create(NewSilence {
            matchers: vec!["client_id=\"c9\"".into()],
            starts_at: None,
            ends_at: "2100-01-01T00:00:00Z".into(),
            comment: String::new(),
            created_by: String::new(),
        })
        .unwrap();
    let r = Router::new(&config(TREE))
        .unwrap()
        .with_silences(store.clone());
    let now = chrono::Utc::now().timestamp_millis();
    let listed: Vec<(String, &str, &str)> = store
        .list(now)
        .into_iter()
        .map(|l| (l.silence.id, l.origin, l.status))
        .collect();
    assert_eq!(
        listed,
        [
            ("config-0".to_owned(), "config", "active"),
            ("config-1".to_owned(), "config", "expired"),
            (api_id.clone(), "api", "active"),
        ]
    );
    let batch7 = labels(&[("client_id", "batch-7")]);
    assert_eq!(store.matching(&batch7, now), ["config-0"]);
    assert!(r.silenced(&batch7, now));
    // A config silence ends with the config, not through the API.
    assert_eq!(store.expire("config-0").unwrap(), Expired::FromConfig);
    assert_eq!(store.expire("nope").unwrap(), Expired::NoSuchSilence);
    // A reload without the batch-7 silence: it is gone, the API's stays.
    let without = TREE.replace("client_id=\"batch-7\"", "client_id=\"batch-8\"");
    let r2 = Router::new(&config(&without))
        .unwrap()
        .with_silences(store.clone());
    assert!(!r2.silenced(&batch7, now));
    assert!(r2.silenced(&labels(&[("client_id", "batch-8")]), now));
    assert!(r2.silenced(&labels(&[("client_id", "c9")]), now));
    // A config that is only checked leaves the store alone.
    let _checked = Router::new(&config(TREE)).unwrap();
    assert!(!store.silences(&batch7, now));
}

#[test]
fn a_routing_reload_swaps_the_tree_but_not_the_receivers() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(TREE);
    let api = std::sync::Arc::new(crate::notify::silence::Silences::default());
    let o = super::outbox::Outbox::open(&c, None, dir.path(), BTreeMap::new(), api).unwrap();
    let mut wider = c.clone();
    wider.route.as_mut().unwrap().group_wait = Some(Duration::from_secs(99));
    o.rerouter()
        .reroute(&wider, &BTreeMap::new(), false)
        .unwrap();
    assert_eq!(
        o.root_route().unwrap().group_wait,
        Duration::from_secs(30),
        "a check only"
    );
    o.rerouter()
        .reroute(&wider, &BTreeMap::new(), true)
        .unwrap();
    assert_eq!(o.root_route().unwrap().group_wait, Duration::from_secs(99));
    let mut other = c.clone();
    other.receivers.pop();
    let e = o
        .rerouter()
        .reroute(&other, &BTreeMap::new(), true)
        .unwrap_err();
    assert!(e.contains("restart"), "{e}");
    assert_eq!(o.root_route().unwrap().group_wait, Duration::from_secs(99));
}

fn body(p: &super::email::Prepared) -> serde_json::Value {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&p.bytes)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn a_webhook_body_is_alertmanagers_and_carries_each_change_once() {
    use super::dispatch::tests_support::Harness;
    let mut h = Harness::new(
        r#"
receivers:
  - {name: hook, webhook: {url: "http://127.0.0.1:1/x", max_alerts: 2}}
route: {receiver: hook, group_by: [alertname], group_wait: 1h}
"#,
    );
    let a = note(
        "flood",
        Severity::High,
        &[("client_id", "a")],
        State::Firing,
    );
    let b = note(
        "flood",
        Severity::High,
        &[("client_id", "b<\"x\">")],
        State::Firing,
    );
    let mut b_resolved = b.clone();
    b_resolved.state = State::Resolved;
    b_resolved.notification_id = format!("{}:resolved", b.id);
    b_resolved.ends_at = Some("2026-01-01T00:05:00.000Z".into());
    let c = note(
        "flood",
        Severity::High,
        &[("client_id", "c")],
        State::Firing,
    );
    h.apply(&[&a, &b, &b_resolved, &c]);
    let sent = h.compose(true);
    assert_eq!(sent.len(), 1);
    let v = body(&sent[0]);
    assert_eq!(v["version"], "4");
    assert_eq!(v["receiver"], "hook");
    assert_eq!(v["groupLabels"]["alertname"], "flood");
    assert_eq!(v["commonLabels"]["alertname"], "flood");
    assert_eq!(v["commonLabels"]["severity"], "high");
    // Three alerts, two kept (max_alerts), one counted as truncated.
    assert_eq!(v["truncatedAlerts"], 1);
    let alerts = v["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    let by_client = |c: &str| {
        alerts
            .iter()
            .find(|x| x["labels"]["client_id"] == c)
            .unwrap_or_else(|| panic!("no {c} in {v}"))
    };
    assert_eq!(by_client("a")["status"], "firing");
    assert_eq!(by_client("a")["endsAt"], "0001-01-01T00:00:00Z");
    // Fired and resolved before the send: one alert, resolved, its untrusted label as
    // plain JSON text.
    let rb = by_client("b<\"x\">");
    assert_eq!(rb["status"], "resolved");
    assert_eq!(rb["endsAt"], "2026-01-01T00:05:00.000Z");
    assert_eq!(rb["fingerprint"], b.id.as_str());
    // Delivered: exactly the changes in the body — a's firing, b's firing and
    // resolution; not c's, which was cut.
    let mut carried = sent[0].notifications.clone();
    carried.sort();
    let mut want = vec![
        a.notification_id.clone(),
        b.notification_id.clone(),
        b_resolved.notification_id.clone(),
    ];
    want.sort();
    assert_eq!(carried, want);
}

#[test]
fn an_alertmanager_receiver_pushes_at_once_resends_firing_alerts_and_ignores_silences() {
    use super::dispatch::tests_support::Harness;
    let mut h = Harness::new(
        r#"
receivers:
  - {name: am, alertmanager: {url: "http://127.0.0.1:1", resend_interval: 1m}}
route: {receiver: am, group_by: [alertname], group_wait: 1h, group_interval: 1h, repeat_interval: 4h}
silences:
  - matchers: ['client_id="muted"']
    ends_at: "2100-01-01T00:00:00Z"
"#,
    );
    let t0 = 1_800_000_000_000i64; // 2027-01-15, after the alerts' event times
    let a = note(
        "flood",
        Severity::High,
        &[("client_id", "muted")],
        State::Firing,
    );
    h.apply(&[&a]);
    // group_wait 1h does not hold it back, and the silence does not apply.
    let sent = h.compose_at(t0, false);
    assert_eq!(sent.len(), 1, "pushed at once");
    let v = body(&sent[0]);
    let alerts = v.as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["labels"]["alertname"], "flood");
    assert_eq!(alerts[0]["labels"]["client_id"], "muted");
    assert_eq!(alerts[0]["startsAt"], "2026-01-01T00:01:00.000Z");
    // endsAt four resend intervals ahead of the clock.
    assert_eq!(
        alerts[0]["endsAt"],
        chrono::DateTime::from_timestamp_millis(t0 + 4 * 60_000)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    // Nothing new before the resend interval; the still-firing alert after it.
    assert!(h.compose_at(t0 + 59_000, false).is_empty());
    let again = h.compose_at(t0 + 60_000, false);
    assert_eq!(again.len(), 1);
    assert_eq!(body(&again[0]).as_array().unwrap().len(), 1);
    assert!(
        again[0].notifications.is_empty(),
        "a resend is no new change"
    );
    // Resolved: sent with its resolution time as endsAt.
    let mut r = a.clone();
    r.state = State::Resolved;
    r.notification_id = format!("{}:resolved", a.id);
    r.ends_at = Some("2026-01-01T00:05:00.000Z".into());
    h.apply(&[&r]);
    let done = h.compose_at(t0 + 61_000, false);
    assert_eq!(done.len(), 1);
    assert_eq!(body(&done[0])[0]["endsAt"], "2026-01-01T00:05:00.000Z");
    assert_eq!(done[0].notifications, [r.notification_id.clone()]);
}
