//! `cordon demo`: start the demo gateway (see [`crate::demo`]), print the keys
//! and commands to try, and serve until SIGINT or SIGTERM.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use crate::demo::{self, Demo};

pub fn run(listen: SocketAddr, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<ExitCode> {
    super::serve::init_tracing(super::serve::LogFormat::Text);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            writeln!(err, "error: cannot start the runtime: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    runtime.block_on(async {
        let demo = match demo::start(listen).await {
            Ok(d) => d,
            Err(e) => {
                writeln!(err, "error: {e}")?;
                if e.starts_with("cannot listen") {
                    writeln!(
                        err,
                        "hint: pick another address, e.g. `cordon demo --listen 127.0.0.1:0`"
                    )?;
                }
                return Ok(ExitCode::FAILURE);
            }
        };
        banner(&demo, out)?;
        out.flush()?;
        super::serve::wait_for_signal().await;
        writeln!(out, "stopping the demo; deleting {}", demo.dir.display())?;
        demo.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn banner(demo: &Demo, out: &mut dyn Write) -> io::Result<()> {
    let addr = reachable(demo.addr);
    let url = format!("http://{addr}/v1");
    // Scripts and tests read these two lines, as with `cordon serve`.
    writeln!(out, "cordon listening on {}", demo.addr)?;
    writeln!(out, "cordon admin listening on {}", demo.admin_addr)?;
    writeln!(out)?;
    writeln!(
        out,
        "cordon DEMO: the real gateway, in front of SIMULATED providers."
    )?;
    writeln!(
        out,
        "The providers are stand-ins inside this process: no model runs, nothing leaves\n\
         this machine, and nothing you send is logged or kept. Their companies and data\n\
         terms are invented, to show how policies decide."
    )?;
    writeln!(out)?;
    writeln!(out, "  client API  {url}   (OpenAI-compatible)")?;
    writeln!(
        out,
        "  metrics     http://{}/metrics",
        reachable(demo.admin_addr)
    )?;
    writeln!(
        out,
        "  files       {}   (cordon.toml, policies/, SQLite store; deleted on exit)",
        demo.dir.display()
    )?;
    writeln!(out)?;
    writeln!(out, "Simulated providers:")?;
    for (p, _) in &demo.providers {
        writeln!(out, "  {:<17} {:<10} {}", p.id, p.city, p.terms)?;
    }
    writeln!(out)?;
    writeln!(out, "Tenants and their demo keys:")?;
    for k in &demo.keys {
        writeln!(out, "  {:<8} key {}", k.tenant, k.key.expose())?;
        if let Some(d) = demo
            .table
            .tenant(&k.tenant)
            .and_then(|t| t.description.as_deref())
        {
            writeln!(out, "  {:<8}     {d}", "")?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "Which provider serves which model today (as `cordon check` prints it):"
    )?;
    super::check::print_routes(&demo.table, super::today(), out)?;

    let eu = demo.key("eu-only").unwrap_or_default();
    let global = demo.key("global").unwrap_or_default();
    let chat = |key: &str, model: &str, extra: &str| {
        format!(
            "curl -i {url}/chat/completions \\\n  -H \"Authorization: Bearer {key}\" -H \"Content-Type: application/json\" {extra}\\\n  \
             -d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello from the cordon demo\"}}]}}'"
        )
    };
    writeln!(out)?;
    writeln!(out, "Try it from another shell:")?;
    writeln!(out)?;
    writeln!(
        out,
        "# 1. eu-only chats: only sim-fr qualifies (see the x-cordon-provider header)"
    )?;
    writeln!(out, "{}", chat(eu, "chat-small", ""))?;
    writeln!(out)?;
    writeln!(
        out,
        "# 2. eu-only asks for chat-large, which only sim-us serves: 403 policy_denied, with the reason"
    )?;
    writeln!(out, "{}", chat(eu, "chat-large", ""))?;
    writeln!(out)?;
    writeln!(
        out,
        "# 3. global prefers sim-us; this request narrows its own policy to EU processing: sim-de-us-parent"
    )?;
    writeln!(
        out,
        "{}",
        chat(
            global,
            "chat-small",
            "\\\n  -H \"x-cordon-require: processing_in=EU, max_retention_days=0\" "
        )
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "# 4. The official OpenAI Python SDK, unchanged (pip install openai)"
    )?;
    writeln!(
        out,
        "python3 -c 'from openai import OpenAI; c = OpenAI(base_url=\"{url}\", api_key=\"{global}\"); \
         r = c.chat.completions.create(model=\"chat-small\", messages=[{{\"role\": \"user\", \"content\": \"Hello\"}}]); \
         print(r.choices[0].message.content)'"
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Serving. Press Ctrl-C to stop; the temporary files and store are deleted."
    )?;
    Ok(())
}

/// An address a client on this machine can connect to (not 0.0.0.0 or ::).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}
