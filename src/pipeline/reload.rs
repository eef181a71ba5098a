//! Hot reload of the rules and the routing (SIGHUP, `POST /-/reload`): all or nothing,
//! keeping the alert state of the rules that did not change.

use super::*;

impl Pipeline {
    /// Reloads the rule folder (SIGHUP, `POST /-/reload`): the new set is checked first
    /// (rule files, SQL against the tables, receivers named in `route:`, window specs);
    /// a set that fails is rejected with the reason and the running set stays. Rules
    /// whose text is unchanged keep their alert state. A rule with a window no running
    /// rule uses needs a restart (open windows are kept per window spec).
    pub(super) async fn reload(&mut self) -> Result<String, String> {
        // The last window's alerts go out under the rules that judged it.
        if let Err(e) = self.settle().await {
            let e = format!("rule reload not started: {e}");
            tracing::error!("{e}");
            return Err(e);
        }
        let r = &self.reloadable;
        let result = async {
            let notify = match &r.config_path {
                Some(p) => {
                    crate::config::Config::load(p)
                        .map_err(|e| e.to_string())?
                        .notify
                }
                None => r.notify.clone(),
            };
            let rules = crate::rules::load_rules(&r.queries).map_err(|e| e.to_string())?;
            notify.validate(
                rules
                    .iter()
                    .map(|x| (x.def.id.as_str(), x.def.route.as_slice())),
            )?;
            let rule_routes: BTreeMap<String, Vec<String>> = rules
                .iter()
                .filter(|x| !x.def.route.is_empty())
                .map(|x| (x.def.id.clone(), x.def.route.clone()))
                .collect();
            if let Some(r) = &self.rerouter {
                r.reroute(&notify, &rule_routes, false)?;
            }
            let specs = self.windows.specs();
            if let Some(x) = rules.iter().find(|x| !specs.contains(&x.spec)) {
                return Err(format!(
                    "rule {} uses a window ({:?}) that no running rule uses: adding a window \
                     size or slide needs a restart",
                    x.def.id, x.spec
                ));
            }
            let engine = Engine::new(rules, r.tables.clone(), &r.engine)
                .await
                .map_err(|e| e.to_string())?;
            Ok((engine, notify, rule_routes))
        }
        .await;
        let (engine, notify, rule_routes) = match result {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("rule reload rejected, the running rules stay: {e}");
                return Err(e);
            }
        };
        let old: Vec<&Rule> = self.engine.rules().iter().map(|p| &p.rule).collect();
        let saved = self.book.snapshot(&old);
        let mut book = AlertBook::new(engine.rules().len(), &r.alerts);
        book.dropped_rows = self.book.dropped_rows;
        let new: Vec<&Rule> = engine.rules().iter().map(|p| &p.rule).collect();
        let (kept, alerts) = book.restore(saved, &new);
        let kept_ids: std::collections::BTreeSet<String> = new
            .iter()
            .filter(|n| {
                old.iter()
                    .any(|o| o.def.id == n.def.id && o.fingerprint == n.fingerprint)
            })
            .map(|n| n.def.id.clone())
            .collect();
        let statuses: Vec<crate::telemetry::RuleStatus> = {
            let before = self.counters.rules.lock().expect("rules lock");
            new.iter()
                .map(|n| {
                    before
                        .iter()
                        .find(|s| kept_ids.contains(&n.def.id) && s.id == n.def.id)
                        .cloned()
                        .unwrap_or_else(|| n.status())
                })
                .collect()
        };
        let count = new.len();
        if let Some(r) = &self.rerouter {
            // Checked above; a failure here would be a bug, and the old routing stays.
            if let Err(e) = r.reroute(&notify, &rule_routes, true) {
                tracing::error!("routing reload failed: {e}");
            }
        }
        self.reloadable.notify = notify;
        let mut engine = engine;
        if let Some(report) = &self.report {
            engine.keep_tables(crate::report::TABLES);
            let rules = super::build::rule_infos(&engine);
            report.lock().expect("report lock").set_rules(rules);
        }
        self.engine = Arc::new(engine);
        self.book = book;
        *self.counters.rules.lock().expect("rules lock") = statuses;
        self.live
            .alerts
            .lock()
            .expect("alerts lock")
            .retain(|_, n| kept_ids.contains(&n.rule_id));
        let msg = format!(
            "{count} rules loaded; {kept} unchanged rules kept their alert state ({alerts} alerts)"
        );
        tracing::info!("rules reloaded: {msg}");
        Ok(msg)
    }
}
