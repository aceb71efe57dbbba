//! Whether a `{placeholder}` in a stage's `run` resolves: to a param of
//! the stage, a resource, a built-in, or a param or output of a stage
//! upstream that the stage descends from.

use crate::decode::closest;
use crate::model::*;
use crate::template::{Ref, classify};

/// (message, expected, hint) for a placeholder that resolves to nothing.
pub(super) type RefProblem = (String, String, Option<String>);

pub(super) fn check_reference(
    exp: &Experiment,
    stage: &Stage,
    earlier: &[Stage],
    path: &[String],
) -> Result<(), RefProblem> {
    let shown = format!("{{{}}}", path.join("."));
    let earlier_names = || {
        if earlier.is_empty() {
            "none: this is the first stage".to_string()
        } else {
            earlier
                .iter()
                .map(|s| format!("`{}`", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let upstream = |name: &str| -> Result<&Stage, RefProblem> {
        if let Some(s) = earlier.iter().find(|s| s.name == name) {
            return Ok(s);
        }
        let why = if name == stage.name {
            format!("`{shown}` in stage `{name}` refers to its own stage")
        } else if exp.stage(name).is_some() {
            format!(
                "`{shown}` refers to stage `{name}`, which runs after stage `{}`",
                stage.name
            )
        } else {
            format!("`{shown}` refers to a stage `{name}` that does not exist")
        };
        Err((
            why,
            format!("an earlier stage (earlier stages: {})", earlier_names()),
            None,
        ))
    };
    match classify(path) {
        Ref::Out | Ref::Trial => Ok(()),
        Ref::Param(p) => {
            if stage.param(p).is_some() {
                return Ok(());
            }
            let names: Vec<&str> = stage.params.iter().map(|p| p.name.as_str()).collect();
            let hint = closest(p, &names).map(|c| format!("did you mean `{{{c}}}`?"));
            let mut known: Vec<String> = names.iter().map(|n| format!("{{{n}}}")).collect();
            known.extend(
                [
                    "{out}",
                    "{trial}",
                    "{resources.NAME}",
                    "{STAGE.out}",
                    "{STAGE.params.NAME}",
                ]
                .map(String::from),
            );
            Err((
                format!(
                    "`{shown}` matches no parameter of stage `{}` and no builtin",
                    stage.name
                ),
                format!("one of {}", known.join(", ")),
                hint.or_else(|| Some("write `{{` and `}}` for literal braces".to_string())),
            ))
        }
        Ref::Resource(r) => {
            if exp.resources.iter().any(|x| x.name == r) {
                return Ok(());
            }
            let names: Vec<&str> = exp.resources.iter().map(|x| x.name.as_str()).collect();
            Err((
                format!("`{shown}` refers to a resource `{r}` that is not declared"),
                if names.is_empty() {
                    "a `resources:` entry with that name".to_string()
                } else {
                    format!("one of the declared resources: {}", names.join(", "))
                },
                closest(r, &names).map(|c| format!("did you mean `{{resources.{c}}}`?")),
            ))
        }
        Ref::UpstreamOut(s) => upstream(s).map(|_| ()),
        Ref::UpstreamParam(s, p) => {
            let up = upstream(s)?;
            if up.param(p).is_some() {
                Ok(())
            } else {
                Err((
                    format!("`{shown}`: stage `{s}` has no parameter `{p}`"),
                    format!(
                        "one of stage `{s}`'s parameters: {}",
                        up.params
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None,
                ))
            }
        }
        Ref::Invalid => Err((
            format!("`{shown}` is not a placeholder flambe knows"),
            "{PARAM}, {out}, {trial}, {resources.NAME}, {STAGE.out} or {STAGE.params.NAME}"
                .to_string(),
            Some("write `{{` and `}}` for literal braces".to_string()),
        )),
    }
}
