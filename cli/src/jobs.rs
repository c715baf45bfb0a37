//! `actor jobs FILE`: the workflows and jobs a durable-jobs journal records,
//! read from the file itself (no tree needed), as tables or JSON; and
//! `--resolve KEY`, which settles a job that only a person can settle.

use std::path::Path;

use actor::jobs::{JobInfo, Journal, Resolution, WorkflowInfo};
use actor::transport::Escaped;
use serde_json::{Value, json};

use crate::json::Json;
use crate::show::{table, uptime};

/// How to settle a job with `--resolve`.
pub(crate) enum Settle {
    Succeeded(Value),
    Failed(String),
    Retry,
}

/// Lists the journal's workflows (and the jobs submitted on their own), or
/// with `workflow` that workflow's steps.
pub(crate) fn list(path: &Path, workflow: Option<&str>, as_json: bool) -> actor::Result<String> {
    let journal = Journal::open_read_only(path)?;
    match workflow {
        None => {
            let workflows = journal.workflows()?;
            let jobs = journal.jobs(None)?;
            if as_json {
                let v = json!({
                    "workflows": workflows.iter().map(workflow_object).collect::<Vec<_>>(),
                    "jobs": jobs.iter().map(job_object).collect::<Vec<_>>(),
                });
                return Ok(format!("{v}\n"));
            }
            let mut out = workflows_table(&workflows);
            if !jobs.is_empty() {
                out.push('\n');
                out.push_str(&jobs_table(&jobs));
            }
            Ok(out)
        }
        Some(id) => {
            let Some(w) = journal.workflows()?.into_iter().find(|w| w.id == id) else {
                return Err(actor::jobs::JobError::NotFound { what: id.to_owned() }.into());
            };
            let jobs = journal.jobs(Some(id))?;
            if as_json {
                let v = json!({ "workflow": workflow_object(&w), "jobs": jobs.iter().map(job_object).collect::<Vec<_>>() });
                return Ok(format!("{v}\n"));
            }
            Ok(jobs_table(&jobs))
        }
    }
}

/// Settles job `key` of the journal at `path`.
pub(crate) fn resolve(path: &Path, key: &str, how: Settle, as_json: bool) -> actor::Result<String> {
    let journal = Journal::open(path)?;
    let (resolution, said) = match how {
        Settle::Succeeded(v) => (Resolution::succeeded(&v)?, "succeeded"),
        Settle::Failed(reason) => (Resolution::Failed(reason), "failed"),
        Settle::Retry => (Resolution::Retry, "to run again"),
    };
    journal.resolve(key, resolution)?;
    Ok(if as_json {
        format!("{}\n", json!({ "resolved": key, "as": said }))
    } else {
        format!("resolved {key} as {said}\n")
    })
}

/// A stored msgpack value as JSON (`null` if it does not decode).
fn value(bytes: Option<&[u8]>) -> Value {
    bytes.and_then(|b| rmp_serde::from_slice::<Json>(b).ok()).map_or(Value::Null, |Json(v)| v)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ago(ms: i64) -> String {
    format!("{} ago", uptime(u64::try_from(now_ms().saturating_sub(ms)).unwrap_or(0)))
}

fn workflow_object(w: &WorkflowInfo) -> Value {
    json!({
        "id": w.id,
        "state": w.state.as_str(),
        "runs": w.runs,
        "steps": w.steps,
        "succeeded": w.succeeded,
        "owner": w.owner.as_ref().map(|o| json!({ "pid": o.pid, "host": o.host })),
        "result": value(w.result.as_deref()),
        "error": w.error,
        "created_ms": w.created_ms,
        "updated_ms": w.updated_ms,
    })
}

fn job_object(j: &JobInfo) -> Value {
    json!({
        "key": j.key,
        "workflow": j.workflow.as_ref().map(|(w, _)| w),
        "step": j.workflow.as_ref().map(|(_, s)| s),
        "function": j.function,
        "target": j.target,
        "idempotent": j.idempotent,
        "state": j.state.as_str(),
        "args": value(Some(&j.args)),
        "result": value(j.result.as_deref()),
        "error": j.error,
        "attempts": j.attempts.iter().map(|a| json!({
            "number": a.number,
            "actor": a.actor,
            "outcome": a.outcome.as_str(),
            "error": a.error,
            "started_ms": a.started_ms,
            "ended_ms": a.ended_ms,
        })).collect::<Vec<_>>(),
        "created_ms": j.created_ms,
        "updated_ms": j.updated_ms,
    })
}

fn workflows_table(workflows: &[WorkflowInfo]) -> String {
    let mut rows = vec![["WORKFLOW", "STATE", "STEPS", "DONE", "RUNS", "OWNER", "UPDATED"].map(String::from)];
    for w in workflows {
        rows.push([
            Escaped(&w.id).to_string(),
            w.state.as_str().to_owned(),
            w.steps.to_string(),
            w.succeeded.to_string(),
            w.runs.to_string(),
            w.owner.as_ref().map_or_else(|| "-".into(), |o| format!("pid {} on {}", o.pid, Escaped(&o.host))),
            ago(w.updated_ms),
        ]);
    }
    table(&rows)
}

fn jobs_table(jobs: &[JobInfo]) -> String {
    let mut rows =
        vec![["KEY", "FUNCTION", "TARGET", "STATE", "ATTEMPTS", "RESULT OR ERROR"].map(String::from)];
    for j in jobs {
        let outcome = match (&j.result, &j.error) {
            (Some(r), _) => value(Some(r)).to_string(),
            (None, Some(e)) => e.lines().next().unwrap_or_default().to_owned(),
            (None, None) => "-".into(),
        };
        rows.push([
            Escaped(&j.key).to_string(),
            j.function.clone(),
            Escaped(&j.target).to_string(),
            j.state.as_str().to_owned(),
            j.attempts.len().to_string(),
            Escaped(&outcome).to_string(),
        ]);
    }
    table(&rows)
}
