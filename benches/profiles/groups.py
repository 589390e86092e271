#!/usr/bin/env python3
"""Shares of perf samples whose stack contains a frame: `perf script | python3 groups.py`."""
import sys
stacks=[s for s in (open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin).read().split('\n\n') if s.strip()]
N=len(stacks)
pats=[('request path (exchange::proxy, inclusive)','exchange::proxy'),('reqwest: execute_request + PendingRequest::poll','reqwest::async_impl::client'),('reqwest: URL parsing (into_url, idna, url::parser)','url::parser'),('governor DefaultClock::default (quanta calibration)','quanta::'),('Exchange::finish (metrics, usage record, log)','Exchange::finish'),('access log line (tracing_subscriber)','tracing_subscriber'),('usage writer + SQLite','usage::Writer::run'),('SQLite (all)','sqlite3'),('prometheus label lookups','prometheus::'),('hyper server connection','dispatch::Server'),('hyper client connection','dispatch::Client'),('hyper-util client (pool + connection task)','client::legacy'),('cordon upstream pool (Pool, UpstreamBody: drives the connection)','upstream::pool'),('socket writes (writev, incl. kernel)','__GI___writev'),('stream relay (RelayBody, incl. upstream body)','RelayBody'),('serde_json','serde_json'),('sqlx (usage writer task + SQLite connection threads)','sqlx'),('SQLite connection threads (sqlx worker)','sqlx_sqlite::connection::worker'),('tokio timeout (per-attempt deadline)','tokio::time::timeout'),('cordon::auth (key hash + cache)','cordon::auth'),('cordon::policy','cordon::policy'),('cordon::protocol (request parse/rewrite)','cordon::protocol'),('kernel (syscalls, TCP)','[kernel.kallsyms]')]
print(f"samples: {N}")
for name,p in pats:
    n=sum(1 for s in stacks if p in s)
    print(f"{100*n/N:6.2f}%  {name}")
