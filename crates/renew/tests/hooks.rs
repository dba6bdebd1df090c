//! Hooks run for real with `sh`, observed through the files they write.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use certfleet_renew::hooks::TAIL_BYTES;
use certfleet_renew::{HookCommand, HookConfig, HookKind, HookRunner, HookStatus, LineageHooks, run_hook};

struct Env {
    _tmp: tempfile::TempDir,
    config_dir: PathBuf,
    log: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let config_dir = tmp.path().join("letsencrypt");
    for d in ["pre", "post", "deploy"] {
        std::fs::create_dir_all(config_dir.join("renewal-hooks").join(d)).unwrap();
    }
    let log = tmp.path().join("log");
    Env {
        config_dir,
        log,
        _tmp: tmp,
    }
}

fn script(path: &Path, body: &str, mode: u32) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn dir_hook(e: &Env, kind: &str, name: &str, body: &str) -> PathBuf {
    let p = e.config_dir.join("renewal-hooks").join(kind).join(name);
    script(&p, body, 0o755);
    p
}

fn log_lines(e: &Env) -> Vec<String> {
    std::fs::read_to_string(&e.log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

fn domains(d: &[&str]) -> Vec<String> {
    d.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn directory_hooks_run_in_order_before_command_line_ones() {
    let e = env();
    let log = q(&e.log);
    dir_hook(&e, "pre", "20-second", &format!("echo pre-dir-20 >> {log}"));
    dir_hook(&e, "pre", "10-first", &format!("echo pre-dir-10 >> {log}"));
    dir_hook(&e, "post", "50-post", &format!("echo post-dir >> {log}"));
    dir_hook(
        &e,
        "deploy",
        "a-deploy",
        &format!("echo deploy-dir-$RENEWED_DOMAINS >> {log}"),
    );
    let mut cfg = HookConfig::new(&e.config_dir);
    cfg.pre_hook = Some(format!("echo pre-cli >> {log}"));
    cfg.post_hook = Some(format!("echo post-cli >> {log}"));
    cfg.deploy_hook = Some(format!("echo deploy-cli-$RENEWED_DOMAINS >> {log}"));
    let mut runner = HookRunner::new(cfg);
    let lh = LineageHooks::default();

    runner.before_attempt(&lh).await;
    runner
        .renewed(Path::new("/etc/letsencrypt/live/a"), &domains(&["a.test"]), &lh)
        .await;
    runner.before_attempt(&lh).await;
    runner
        .renewed(Path::new("/etc/letsencrypt/live/b"), &domains(&["b.test"]), &lh)
        .await;
    assert_eq!(
        log_lines(&e),
        [
            "pre-dir-10",
            "pre-dir-20",
            "pre-cli",
            "deploy-dir-a.test",
            "deploy-cli-a.test",
            "deploy-dir-b.test",
            "deploy-cli-b.test"
        ],
        "pre hooks once per run, deploy hooks once per lineage"
    );
    runner.finish().await;
    runner.finish().await;
    let lines = log_lines(&e);
    assert_eq!(lines[7..], ["post-dir", "post-cli"], "{lines:?}");
    assert!(
        runner.results().iter().all(|r| r.success()),
        "{:?}",
        runner.results()
    );
    assert_eq!(runner.results().len(), 9);
}

#[tokio::test]
async fn no_attempt_means_no_pre_or_post_hooks() {
    let e = env();
    let log = q(&e.log);
    dir_hook(&e, "post", "p", &format!("echo post >> {log}"));
    let mut cfg = HookConfig::new(&e.config_dir);
    cfg.pre_hook = Some(format!("echo pre >> {log}"));
    cfg.post_hook = Some(format!("echo post-cli >> {log}"));
    let mut runner = HookRunner::new(cfg);
    assert!(!runner.attempted());
    assert!(runner.finish().await.is_empty());
    assert!(!e.log.exists());
}

#[tokio::test]
async fn deploy_and_post_hooks_get_certbot_environment() {
    let e = env();
    let out = e.log.parent().unwrap();
    let mut cfg = HookConfig::new(&e.config_dir);
    cfg.deploy_hook = Some(format!(
        "printf '%s|%s\\n' \"$RENEWED_LINEAGE\" \"$RENEWED_DOMAINS\" >> {}",
        q(&out.join("deploy.env"))
    ));
    cfg.post_hook = Some(format!(
        "printf '%s|%s\\n' \"$RENEWED_DOMAINS\" \"$FAILED_DOMAINS\" > {}",
        q(&out.join("post.env"))
    ));
    let mut runner = HookRunner::new(cfg);
    let lh = LineageHooks::default();
    runner.before_attempt(&lh).await;
    let r = runner
        .renewed(
            Path::new("/etc/letsencrypt/live/example.com"),
            &domains(&["example.com", "www.example.com"]),
            &lh,
        )
        .await;
    assert_eq!(r.len(), 1);
    assert!(r[0].success() && r[0].kind == HookKind::Deploy, "{}", r[0]);
    runner.before_attempt(&lh).await;
    runner.failed(&domains(&["broken.test", "*.broken.test"]));
    runner.before_attempt(&lh).await;
    runner
        .renewed(
            Path::new("/etc/letsencrypt/live/other.test"),
            &domains(&["other.test"]),
            &lh,
        )
        .await;
    runner.finish().await;
    assert_eq!(
        std::fs::read_to_string(out.join("deploy.env")).unwrap(),
        "/etc/letsencrypt/live/example.com|example.com www.example.com\n/etc/letsencrypt/live/other.test|other.test\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("post.env")).unwrap(),
        "example.com www.example.com other.test|broken.test *.broken.test\n"
    );
}

#[tokio::test]
async fn identical_commands_run_once_and_lineage_hooks_apply() {
    let e = env();
    let log = q(&e.log);
    let dir_pre = dir_hook(&e, "pre", "stop-web", &format!("echo dir-pre >> {log}"));
    let dir_deploy = dir_hook(&e, "deploy", "reload", &format!("echo dir-deploy >> {log}"));
    // Command-line hooks naming the directory hooks' paths are not run twice (certbot dedupes).
    let mut cfg = HookConfig::new(&e.config_dir);
    cfg.pre_hook = Some(dir_pre.display().to_string());
    cfg.deploy_hook = Some(dir_deploy.display().to_string());
    let mut runner = HookRunner::new(cfg);
    runner.before_attempt(&LineageHooks::default()).await;
    runner
        .renewed(Path::new("/x"), &domains(&["x.test"]), &LineageHooks::default())
        .await;
    assert_eq!(log_lines(&e), ["dir-pre", "dir-deploy"]);

    // Without command-line hooks, each lineage's saved hooks run; identical ones once.
    let e = env();
    let log = q(&e.log);
    let mut runner = HookRunner::new(HookConfig::new(&e.config_dir));
    let a = LineageHooks {
        pre_hook: Some(format!("echo pre-A >> {log}")),
        post_hook: Some(format!("echo post-shared >> {log}")),
        deploy_hook: Some(format!("echo deploy-A >> {log}")),
    };
    let b = LineageHooks {
        pre_hook: Some(format!("echo pre-B >> {log}")),
        post_hook: Some(format!("echo post-shared >> {log}")),
        deploy_hook: None,
    };
    runner.before_attempt(&a).await;
    runner.renewed(Path::new("/a"), &domains(&["a"]), &a).await;
    runner.before_attempt(&b).await;
    runner.renewed(Path::new("/b"), &domains(&["b"]), &b).await;
    runner.before_attempt(&a).await;
    runner.finish().await;
    assert_eq!(log_lines(&e), ["pre-A", "deploy-A", "pre-B", "post-shared"]);
}

#[tokio::test]
async fn non_executable_and_backup_files_are_skipped() {
    let e = env();
    let log = q(&e.log);
    let pre = e.config_dir.join("renewal-hooks/pre");
    script(&pre.join("forgot-chmod"), &format!("echo bad >> {log}"), 0o644);
    script(&pre.join("editor-backup~"), &format!("echo bad >> {log}"), 0o755);
    std::fs::create_dir(pre.join("subdir")).unwrap();
    dir_hook(&e, "pre", "ok", &format!("echo ok >> {log}"));
    let mut runner = HookRunner::new(HookConfig::new(&e.config_dir));
    runner.before_attempt(&LineageHooks::default()).await;
    runner.before_attempt(&LineageHooks::default()).await;
    assert_eq!(log_lines(&e), ["ok"]);
    assert_eq!(runner.warnings().len(), 1, "{:?}", runner.warnings());
    assert!(runner.warnings()[0].contains("forgot-chmod") && runner.warnings()[0].contains("chmod +x"));

    // --no-directory-hooks: none of them.
    let e2 = env();
    dir_hook(&e2, "pre", "ok", &format!("echo ok >> {}", q(&e2.log)));
    let mut cfg = HookConfig::new(&e2.config_dir);
    cfg.hooks_dir = None;
    let mut runner = HookRunner::new(cfg);
    runner.before_attempt(&LineageHooks::default()).await;
    assert!(!e2.log.exists());
}

#[tokio::test]
async fn failing_hook_is_reported_and_the_run_goes_on() {
    let e = env();
    let log = q(&e.log);
    dir_hook(
        &e,
        "pre",
        "1-fails",
        "echo 'nginx: [emerg] cannot load certificate' >&2; echo some stdout; exit 3",
    );
    let mut cfg = HookConfig::new(&e.config_dir);
    cfg.pre_hook = Some(format!("echo still-ran >> {log}"));
    let mut runner = HookRunner::new(cfg);
    let r = runner.before_attempt(&LineageHooks::default()).await;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].status, HookStatus::Exited(3));
    assert!(r[0].stderr_tail.contains("cannot load certificate"));
    assert_eq!(r[0].stdout_tail, "some stdout\n");
    let text = r[0].to_string();
    assert!(
        text.contains("pre-hook")
            && text.contains("exit status 3")
            && text.contains("cannot load certificate"),
        "{text}"
    );
    assert!(r[1].success());
    assert_eq!(log_lines(&e), ["still-ran"]);
    assert_eq!(runner.failures().count(), 1);

    // A hook that cannot even start.
    let r = run_hook(
        HookKind::Deploy,
        &HookCommand::Exec("/nonexistent/hook".into()),
        &[],
        Duration::from_secs(5),
    )
    .await;
    assert!(matches!(r.status, HookStatus::SpawnFailed(_)), "{r:?}");
    assert!(r.to_string().contains("could not be started"), "{r}");
    let r = run_hook(
        HookKind::Deploy,
        &HookCommand::Argv(vec![]),
        &[],
        Duration::from_secs(5),
    )
    .await;
    assert!(matches!(r.status, HookStatus::SpawnFailed(_)));
    // Killed by a signal of its own.
    let r = run_hook(
        HookKind::Post,
        &HookCommand::Shell("kill -9 $$".into()),
        &[],
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.status, HookStatus::Signaled(9));
}

fn alive(pid: i32) -> bool {
    // Gone, or a zombie waiting for init to reap it, both count as dead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let e = env();
    let pidfile = e.log.parent().unwrap().join("bg.pid");
    let cmd = HookCommand::Shell(format!(
        "sleep 60 & echo $! > {}; echo started >&2; sleep 60",
        q(&pidfile)
    ));
    let t = Instant::now();
    let r = run_hook(HookKind::Pre, &cmd, &[], Duration::from_millis(500)).await;
    assert_eq!(r.status, HookStatus::TimedOut);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(r.duration >= Duration::from_millis(500));
    assert!(r.stderr_tail.contains("started"));
    assert!(r.to_string().contains("timed out"), "{r}");
    let bg: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while alive(bg) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !alive(bg),
        "background process {bg} of the timed-out hook survived"
    );

    // Through the runner, with its configured timeout.
    let mut cfg = HookConfig::new(&e.config_dir);
    cfg.timeout = Duration::from_millis(300);
    cfg.post_hook = Some("sleep 30".into());
    let mut runner = HookRunner::new(cfg);
    runner.failed(&domains(&["a.test"]));
    let r = runner.finish().await;
    assert_eq!(r[0].status, HookStatus::TimedOut);
}

#[tokio::test]
async fn leftover_background_process_does_not_hang_the_run() {
    let e = env();
    let pidfile = e.log.parent().unwrap().join("bg.pid");
    // The background sleep inherits stdout/stderr; the hook itself exits at once.
    let cmd = HookCommand::Shell(format!("sleep 20 & echo $! > {}; echo done", q(&pidfile)));
    let t = Instant::now();
    let r = run_hook(HookKind::Deploy, &cmd, &[], Duration::from_secs(10)).await;
    assert!(r.success(), "{r}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(r.stdout_tail, "done\n");
    let bg: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(bg), nix::sys::signal::Signal::SIGKILL);
}

#[tokio::test]
async fn output_tail_is_bounded() {
    let cmd = HookCommand::Shell(
        "i=0; while [ $i -lt 2000 ]; do echo line-$i >&2; i=$((i+1)); done; exit 1".into(),
    );
    let r = run_hook(HookKind::Post, &cmd, &[], Duration::from_secs(20)).await;
    assert_eq!(r.status, HookStatus::Exited(1));
    assert!(r.stderr_tail.len() <= TAIL_BYTES);
    assert!(r.stderr_tail.ends_with("line-1999\n"), "keeps the end");
}

#[tokio::test]
async fn dry_run_skips_deploy_hooks_only() {
    let e = env();
    let log = q(&e.log);
    dir_hook(&e, "deploy", "d", &format!("echo deploy >> {log}"));
    let mut cfg = HookConfig::new(&e.config_dir);
    cfg.dry_run = true;
    cfg.pre_hook = Some(format!("echo pre >> {log}"));
    cfg.post_hook = Some(format!("echo post >> {log}"));
    cfg.deploy_hook = Some(format!("echo deploy-cli >> {log}"));
    let mut runner = HookRunner::new(cfg);
    runner.before_attempt(&LineageHooks::default()).await;
    assert!(
        runner
            .renewed(Path::new("/x"), &domains(&["x"]), &LineageHooks::default())
            .await
            .is_empty()
    );
    runner.finish().await;
    assert_eq!(log_lines(&e), ["pre", "post"]);
}
