//! One load thread: a pinned glommio executor with its share of the connections. It opens
//! them (`connect`; the sinks' are kept in `ThreadSinks`), reports in, waits for the main
//! thread's clock, then keeps its senders fed (open loop: the `pacer` task sends each Prepare
//! at its intended time), its delayed sink answers flowing and the sink fault schedule
//! applied until told to stop, drains what is still in flight, and returns its own `Stats`
//! to be merged. Threads share only the atomics in `Common`; nothing on the packet path is
//! shared.

use crate::cli::CliShared;
use crate::conn::{self, Ring, Shared as Conn};
use crate::connect::{connect_all, connect_all_http, Opener};
use crate::http;
use crate::pacer::{self, Schedule};
use crate::plan::Plan;
use crate::sinks::thread::ThreadSinks;
use crate::stats::Stats;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longer than any executor spin (`pacer::executor_spin`), so that the executor parks.
const FIRST_PARK: Duration = Duration::from_millis(3);

/// A thread's place: its index, its CPU and its share of the connections.
pub(crate) struct ThreadSpec {
    pub(crate) index: usize,
    pub(crate) cpu: usize,
    pub(crate) senders: usize,
    /// The run's sender connections on the threads before this one (this thread's first
    /// sender is that one of the run: it places its open-loop schedule).
    pub(crate) senders_before: usize,
    /// BTP connections of each sink on this thread (0: no sink here).
    pub(crate) sinks: usize,
}

/// What the threads and the main thread share.
#[derive(Clone)]
pub(crate) struct Common {
    pub(crate) cli: Arc<CliShared>,
    /// Threads that finished connecting (or failed to).
    pub(crate) ready: Arc<AtomicUsize>,
    pub(crate) start: Instant,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) broken: Arc<AtomicBool>,
    pub(crate) progress: Arc<Vec<[AtomicU64; 2]>>,
    pub(crate) send_start: Arc<AtomicU64>,
    pub(crate) failed: Arc<AtomicBool>,
}

/// The body of one load thread; returns its counters, or why it could not run.
pub(crate) async fn thread_main(spec: ThreadSpec, common: Common) -> Result<Stats, String> {
    let cli = &common.cli;
    let open_log = |path: &Option<std::path::PathBuf>, role: usize| {
        path.as_deref()
            .filter(|_| role > 0)
            .map(|p| conn::FulfillLog::open(p).map(Rc::new))
            .transpose()
    };
    let sender_log = open_log(&cli.sender_log, spec.senders)?;
    let sink_log = open_log(&cli.sink_log, spec.sinks)?;
    let plan = Rc::new(Plan {
        start: common.start,
        send_start_ns: 0,
        stop: Arc::clone(&common.stop),
        broken: Arc::clone(&common.broken),
        window: cli.window,
        rate_per_conn: cli.rate_per_conn,
        amount: cli.amount,
        data_bytes: cli.data_bytes,
        expiry_ms: cli.expiry_ms,
        destination: cli.destination.clone(),
        destinations: cli.destinations,
        sink: cli.sink_options.clone(),
        sender_log: sender_log.clone(),
        sink_log: sink_log.clone(),
        ring_spin: cli.ring_io.then_some(cli.pacer_spin),
    });
    let stats = Rc::new(RefCell::new(Stats::new()));
    let opener = Opener {
        plan: Rc::clone(&plan),
        ring: Rc::new(Ring::new(cli.seed)),
        stats: Rc::clone(&stats),
        tls: cli.dial_tls.clone(),
    };
    let mut sinks = ThreadSinks::new(&spec, cli, &opener);
    let connected = if cli.http {
        connect_all_http(&spec, &common, &opener, &sinks).await
    } else {
        connect_all(&spec, &common, &opener, &sinks)
            .await
            .map(|conns| conns.into_iter().map(Link::Btp).collect())
    };
    // The executor's first park registers the thread for `membarrier` (glommio parks with
    // one), which takes tens of milliseconds: have it now, before the clock starts, not as a
    // stall in the run's first second. A sleep longer than the executor's spin parks it.
    glommio::timer::sleep(FIRST_PARK).await;
    // Report in whether or not we connected, so the main thread can start the clock.
    if let Err(e) = &connected {
        common.failed.store(true, Ordering::Relaxed);
        eprintln!("ilp-loadgen: {e}");
    }
    common.ready.fetch_add(1, Ordering::Relaxed);
    let senders: Vec<Link> = connected.unwrap_or_default();
    // The clock starts for every thread when the main thread has heard from all of them and
    // stored the start time (a little ahead, so that every thread sees it before it comes).
    while common.send_start.load(Ordering::Relaxed) == 0 && !common.stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_micros(100)).await;
    }
    let send_start_ns = common.send_start.load(Ordering::Relaxed);
    let send_start = Duration::from_nanos(send_start_ns);
    let plan = Rc::new(Plan {
        send_start_ns,
        ..Plan::clone(&plan)
    });
    for c in &senders {
        c.set_plan(Rc::clone(&plan));
    }
    sinks.set_plan(&plan);
    let senders = Rc::new(senders);
    let pacer = match plan.rate_per_conn {
        // Open loop: the pacer sends every Prepare at its time, the first at the start.
        Some(rate) => {
            for (i, c) in senders.iter().enumerate() {
                let ordinal = spec.senders_before + i;
                c.set_schedule(Schedule::staggered(
                    send_start_ns,
                    rate,
                    cli.senders_total,
                    ordinal,
                ));
            }
            let stop = Arc::clone(&common.stop);
            (!senders.is_empty()).then(|| {
                glommio::spawn_local(pacer::pace(
                    Rc::clone(&senders),
                    plan.start,
                    pacer::Pacing::new(cli.pacer_spin),
                    move || stop.load(Ordering::Relaxed),
                ))
                .detach()
            })
        }
        // Closed loop: fill the windows from the start.
        None => {
            let until = (plan.start + send_start).saturating_duration_since(Instant::now());
            glommio::timer::sleep(until).await;
            for c in senders.iter() {
                c.refill();
            }
            None
        }
    };
    // Housekeeping: delayed sink answers, the fault schedule, the progress line. Each tick is
    // a pass of the executor that may fall in a Prepare's round trip, so no more often than
    // needed (open loop: delays are released to the millisecond).
    let tick = if plan.rate_per_conn.is_some() && plan.sink.delay_ms > 0 {
        Duration::from_millis(1)
    } else {
        Duration::from_millis(5)
    };
    while !common.stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(tick).await;
        if plan.sink.delay_ms > 0 {
            sinks.release_delayed();
        }
        sinks.apply_faults(
            plan.start.elapsed().saturating_sub(send_start),
            &mut stats.borrow_mut(),
        );
        let s = stats.borrow();
        common.progress[spec.index][0].store(s.sent, Ordering::Relaxed);
        common.progress[spec.index][1].store(s.fulfilled, Ordering::Relaxed);
    }
    // Drain: answers still in flight get a bounded grace, then count as timeouts.
    let grace = Duration::from_millis(cli.expiry_ms.min(3_000) + plan.sink.delay_ms);
    if let Some(pacer) = pacer {
        pacer.cancel();
    }
    let deadline = Instant::now() + grace;
    conn::wait_until(deadline, || {
        sinks.release_delayed();
        senders.iter().all(|c| c.outstanding() == 0 || c.closing())
    })
    .await;
    let unanswered: usize = senders.iter().map(|c| c.outstanding()).sum();
    stats.borrow_mut().timeouts += unanswered as u64;
    for c in senders.iter() {
        c.shut();
    }
    sinks.shut();
    glommio::timer::sleep(Duration::from_millis(20)).await;
    for log in sender_log.iter().chain(&sink_log) {
        log.flush()?;
    }
    let stats = stats.borrow().clone();
    Ok(stats)
}

/// A sender connection of either transport, as the thread's loop sees it.
#[derive(Clone)]
pub(crate) enum Link {
    Btp(Conn),
    HttpSender(http::SenderShared),
}

impl Link {
    fn set_plan(&self, plan: Rc<Plan>) {
        match self {
            Link::Btp(c) => c.borrow_mut().set_plan(plan),
            Link::HttpSender(c) => c.borrow_mut().set_plan(plan),
        }
    }

    pub(crate) fn refill(&self) {
        match self {
            Link::Btp(c) => c.borrow_mut().refill(),
            Link::HttpSender(c) => c.borrow_mut().refill(),
        }
    }

    fn set_schedule(&self, schedule: Schedule) {
        match self {
            Link::Btp(c) => c.borrow_mut().set_schedule(schedule),
            Link::HttpSender(c) => c.borrow_mut().set_schedule(schedule),
        }
    }

    /// Open loop: when the next Prepare is meant to go.
    pub(crate) fn next_send_ns(&self) -> Option<u64> {
        match self {
            Link::Btp(c) => c.borrow().next_send_ns(),
            Link::HttpSender(c) => c.borrow().next_send_ns(),
        }
    }

    fn outstanding(&self) -> usize {
        match self {
            Link::Btp(c) => c.borrow().outstanding(),
            Link::HttpSender(c) => c.borrow().outstanding(),
        }
    }

    fn closing(&self) -> bool {
        match self {
            Link::Btp(c) => c.borrow().closing,
            Link::HttpSender(c) => c.borrow().closing,
        }
    }

    fn shut(&self) {
        match self {
            Link::Btp(c) => c.borrow_mut().shut(),
            Link::HttpSender(c) => c.borrow_mut().shut(),
        }
    }
}
