//! Work spread over a few threads: the items of a slice cut into one contiguous run per thread,
//! each run mapped on its own scoped thread, the results put back in the items' order.

use std::thread;

/// A worker thread panicked; the items it held have no result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a worker thread panicked: {0}")]
pub struct Panicked(pub String);

impl Panicked {
    fn of(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        Panicked(message)
    }
}

/// `f` applied to every item on up to `threads` threads (at least one), in the items' order.
/// The items of a thread that panicked come back as [`Panicked`]; the others are unaffected.
///
/// ```
/// use lemal_client::parallel::parallel_map;
///
/// let squares = parallel_map(&[1, 2, 3, 4, 5], 2, |x| x * x);
/// assert_eq!(squares.into_iter().collect::<Result<Vec<_>, _>>(), Ok(vec![1, 4, 9, 16, 25]));
/// ```
pub fn parallel_map<T, R>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<Result<R, Panicked>>
where
    T: Sync,
    R: Send,
{
    let workers = vec![(); threads.max(1)];
    parallel_map_with(items, &workers, |(), item| f(item))
}

/// [`parallel_map`] with one thread per worker context in `workers` (a connection, a buffer),
/// which the thread's items are mapped with: `f(worker, item)`. With no workers, no item has a
/// result.
pub fn parallel_map_with<W, T, R>(
    items: &[T],
    workers: &[W],
    f: impl Fn(&W, &T) -> R + Sync,
) -> Vec<Result<R, Panicked>>
where
    W: Sync,
    T: Sync,
    R: Send,
{
    if items.is_empty() {
        return Vec::new();
    }
    if workers.is_empty() {
        let none = Panicked("no worker to map the items with".to_owned());
        return items.iter().map(|_| Err(none.clone())).collect();
    }
    let f = &f;
    let run = items.len().div_ceil(workers.len());
    thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(run)
            .zip(workers)
            .map(|(part, w)| {
                (part.len(), s.spawn(move || part.iter().map(|t| f(w, t)).collect::<Vec<R>>()))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(n, h)| -> Vec<Result<R, Panicked>> {
                match h.join() {
                    Ok(results) => results.into_iter().map(Ok).collect(),
                    Err(payload) => {
                        let panicked = Panicked::of(payload.as_ref());
                        (0..n).map(|_| Err(panicked.clone())).collect()
                    }
                }
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_the_items_order_whatever_the_thread_count() {
        let items: Vec<u32> = (0..23).collect();
        let want: Vec<u32> = items.iter().map(|x| x * 3).collect();
        for threads in [0, 1, 2, 5, 23, 64] {
            let got: Result<Vec<u32>, _> =
                parallel_map(&items, threads, |x| x * 3).into_iter().collect();
            assert_eq!(got, Ok(want.clone()), "{threads} threads");
        }
        assert!(parallel_map(&[] as &[u32], 4, |x| *x).is_empty());
    }

    #[test]
    fn a_panicking_thread_fails_its_own_items_only() {
        let items: Vec<u32> = (0..6).collect();
        let results = parallel_map(&items, 3, |&x| {
            assert!(x != 3, "item three");
            x
        });
        let failed: Vec<usize> =
            results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
        assert_eq!(failed, [2, 3], "the thread of items 2 and 3 panicked");
        assert!(matches!(&results[3], Err(Panicked(m)) if m.contains("item three")));
        assert_eq!(results[4], Ok(4));
    }

    #[test]
    fn each_worker_context_maps_its_own_run_of_items() {
        let workers = [100, 200];
        let got: Vec<_> = parallel_map_with(&[1, 2, 3], &workers, |w, x| w + x)
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("no panic");
        assert_eq!(got, [101, 102, 203]);
        assert!(parallel_map_with(&[1], &[] as &[u32], |w, x| w + x)[0].is_err());
    }
}
