//! Runs the stages of a build in parallel as their dependencies finish.
//!
//! Stages form a DAG (`FROM <stage>`, `COPY --from=<stage>`). A stage starts once every stage it
//! reads has finished, at most `jobs` at a time, in build order among those ready so the output
//! stays predictable. The first failure stops the schedule: no stage starts after it, the stages
//! already running finish (a half-run `RUN` cannot be rolled back; waiting keeps the work area
//! consistent), and the first error is returned.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError, mpsc};

/// One schedulable node: an index and the indexes it needs finished first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The stage's index.
    pub index: usize,
    /// Stages it reads; each must be an earlier node of the same schedule.
    pub needs: BTreeSet<usize>,
}

/// What a running stage may ask about the others.
pub trait Progress<T> {
    /// The output of a finished stage this one needs.
    fn output(&self, index: usize) -> Option<T>;
    /// Whether a stage other than the asking one, not finished yet, still needs `index`: when
    /// nobody does, the asking stage may take over what `index` left behind (its root
    /// filesystem) instead of copying it.
    fn needed_by_others(&self, index: usize) -> bool;
}

/// Runs `work` for every node, dependencies first, at most `jobs` at once, and returns every
/// output by index, or the first error.
///
/// # Errors
/// The first error `work` returned, after the stages already running have finished.
pub fn run<T, E, F>(nodes: &[Node], jobs: NonZeroUsize, work: F) -> Result<BTreeMap<usize, T>, E>
where
    T: Clone + Send + Sync,
    E: Send,
    F: Fn(usize, &dyn Progress<T>) -> Result<T, E> + Sync,
{
    let order: Vec<usize> = nodes.iter().map(|node| node.index).collect();
    let shared = Shared {
        nodes,
        outputs: Mutex::new(BTreeMap::new()),
        unfinished: Mutex::new(order.iter().copied().collect()),
    };
    let mut waiting: BTreeMap<usize, BTreeSet<usize>> = nodes
        .iter()
        .map(|node| {
            let needs = node
                .needs
                .iter()
                .copied()
                .filter(|need| order.contains(need))
                .collect();
            (node.index, needs)
        })
        .collect();
    let mut ready: VecDeque<usize> = VecDeque::new();
    take_ready(&order, &mut waiting, &mut ready);

    let (done_tx, done_rx) = mpsc::channel::<(usize, Result<T, E>)>();
    let mut first_error = None;
    std::thread::scope(|scope| {
        let mut running = 0usize;
        loop {
            while running < jobs.get() && first_error.is_none() {
                let Some(index) = ready.pop_front() else {
                    break;
                };
                let done_tx = done_tx.clone();
                let shared = &shared;
                let work = &work;
                running += 1;
                scope.spawn(move || {
                    let view = View {
                        shared,
                        asking: index,
                    };
                    let result = work(index, &view);
                    // The receiver outlives every worker: it is dropped after the scope.
                    let _ = done_tx.send((index, result));
                });
            }
            if running == 0 {
                break;
            }
            let Ok((index, result)) = done_rx.recv() else {
                break;
            };
            running -= 1;
            lock(&shared.unfinished).remove(&index);
            match result {
                Ok(output) => {
                    lock(&shared.outputs).insert(index, output);
                    for needs in waiting.values_mut() {
                        needs.remove(&index);
                    }
                    take_ready(&order, &mut waiting, &mut ready);
                }
                Err(err) => {
                    if first_error.is_none() {
                        first_error = Some(err);
                    }
                }
            }
        }
    });
    match first_error {
        Some(err) => Err(err),
        None => Ok(shared
            .outputs
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)),
    }
}

/// Moves the nodes with nothing left to wait for to `ready`, in build order.
fn take_ready(
    order: &[usize],
    waiting: &mut BTreeMap<usize, BTreeSet<usize>>,
    ready: &mut VecDeque<usize>,
) {
    for index in order {
        if waiting.get(index).is_some_and(BTreeSet::is_empty) {
            waiting.remove(index);
            ready.push_back(*index);
        }
    }
}

/// State the coordinator and the workers share.
struct Shared<'a, T> {
    nodes: &'a [Node],
    outputs: Mutex<BTreeMap<usize, T>>,
    unfinished: Mutex<BTreeSet<usize>>,
}

/// A worker's view of the schedule.
struct View<'s, 'a, T> {
    shared: &'s Shared<'a, T>,
    asking: usize,
}

impl<T: Clone> Progress<T> for View<'_, '_, T> {
    fn output(&self, index: usize) -> Option<T> {
        lock(&self.shared.outputs).get(&index).cloned()
    }

    fn needed_by_others(&self, index: usize) -> bool {
        let unfinished = lock(&self.shared.unfinished);
        self.shared.nodes.iter().any(|node| {
            node.index != self.asking
                && unfinished.contains(&node.index)
                && node.needs.contains(&index)
        })
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked (plain maps and sets).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn node(index: usize, needs: &[usize]) -> Node {
        Node {
            index,
            needs: needs.iter().copied().collect(),
        }
    }

    fn jobs(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn dependencies_finish_before_their_dependents_start() {
        let nodes = [node(0, &[]), node(1, &[0]), node(2, &[0]), node(3, &[1, 2])];
        let outputs = run(&nodes, jobs(4), |index, progress| {
            let needs = &nodes[index].needs;
            let inputs: Vec<String> = needs.iter().map(|n| progress.output(*n).unwrap()).collect();
            Ok::<_, String>(format!("{index}({})", inputs.join(",")))
        })
        .unwrap();
        assert_eq!(outputs[&3], "3(1(0()),2(0()))");
    }

    #[test]
    fn independent_stages_run_at_the_same_time_up_to_jobs() {
        let nodes = [node(0, &[]), node(1, &[]), node(2, &[]), node(3, &[])];
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        run(&nodes, jobs(2), |_, _| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn one_job_runs_stages_in_build_order() {
        let nodes = [node(2, &[]), node(0, &[]), node(1, &[0])];
        let order = Mutex::new(Vec::new());
        run(&nodes, jobs(1), |index, _| {
            order.lock().unwrap().push(index);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(*order.lock().unwrap(), [2, 0, 1]);
    }

    #[test]
    fn first_error_stops_new_stages_and_is_returned() {
        let nodes = [node(0, &[]), node(1, &[0]), node(2, &[1])];
        let started = Mutex::new(Vec::new());
        let err = run(&nodes, jobs(2), |index, _| {
            started.lock().unwrap().push(index);
            if index == 1 {
                Err(format!("stage {index} failed"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(err, "stage 1 failed");
        assert_eq!(*started.lock().unwrap(), [0, 1]);
    }

    #[test]
    fn running_stages_finish_when_another_fails() {
        let nodes = [node(0, &[]), node(1, &[])];
        let finished = AtomicUsize::new(0);
        let result = run(&nodes, jobs(2), |index, _| {
            if index == 0 {
                return Err("boom");
            }
            std::thread::sleep(Duration::from_millis(50));
            finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        assert_eq!(result.unwrap_err(), "boom");
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_stage_is_needed_by_others_until_its_last_other_reader_finishes() {
        // 1 and 2 both read 0; 2 starts after 1 finished, so then only 2 needs 0.
        let nodes = [node(0, &[]), node(1, &[0]), node(2, &[0, 1])];
        let answers = Mutex::new(BTreeMap::new());
        run(&nodes, jobs(1), |index, progress| {
            if index > 0 {
                answers
                    .lock()
                    .unwrap()
                    .insert(index, progress.needed_by_others(0));
            }
            Ok::<_, ()>(())
        })
        .unwrap();
        let answers = answers.into_inner().unwrap();
        assert!(answers[&1], "stage 2 still needs stage 0");
        assert!(!answers[&2], "nobody else needs stage 0 any more");
    }

    #[test]
    fn needs_outside_the_schedule_are_ignored() {
        let nodes = [node(1, &[7])];
        let outputs = run(&nodes, jobs(1), |index, _| Ok::<_, ()>(index)).unwrap();
        assert_eq!(outputs[&1], 1);
    }
}
