// The scope tree: which cancel scopes are active, which tasks sit in them, and which of them are
// effectively cancelled.
//
// Owned by one thread (the loop thread that entered the scopes); no locks, no Python types, so
// `cargo test` covers it directly. The payloads `T` (per task) and `S` (per scope) are opaque here.
//
// Shape. Every active scope has a host task and an optional parent scope. The parent is the
// scope that was innermost for the host task when the scope was entered; for the outermost scope
// of a task-group child that is the group's scope, hosted by another task, so one tree spans the
// whole family of tasks. Each task points at its innermost scope (`TaskNode::scope`), and each
// scope lists the tasks whose innermost scope it is (`ScopeNode::tasks`), so cancelling a scope
// finds every task below it by walking down.
//
// Cached effective state. `eff` is "a cancellation reaches code running directly in this scope":
//     eff(s) = s.cancel_called || (!s.shield && eff(parent(s)))
// It is kept up to date eagerly, top-down, whenever `cancel_called` or `shield` changes or a
// scope is entered or re-parented, so "is the current task cancelled?" is O(1) at every
// checkpoint. A change walks only the subtree whose `eff` actually flips.
//
// Rejected: recomputing `eff` by walking up at each checkpoint (O(depth) on the hot path, and it
// still needs the downward walk to find tasks to deliver to); a per-scope set of tasks in a hash
// set (slower than the index-tracked vectors below for the common tiny sets).

use std::sync::atomic::{AtomicUsize, Ordering};

use slotmap::{new_key_type, SlotMap};

new_key_type! {
    /// An active scope.
    pub struct ScopeKey;
    /// A task known to the tree.
    pub struct TaskKey;
}

#[derive(Debug)]
pub struct ScopeNode<S> {
    /// The scope that was innermost for `host` at entry (possibly hosted by another task).
    parent: Option<ScopeKey>,
    /// Position of this scope in `parent.children` (kept exact by swap-remove fix-ups).
    idx_in_parent: usize,
    /// Scopes whose parent is this one.
    children: Vec<ScopeKey>,
    /// Tasks whose innermost scope is this one.
    tasks: Vec<TaskKey>,
    /// The task that entered the scope and must be the one to exit it.
    pub host: TaskKey,
    pub cancel_called: bool,
    pub shield: bool,
    /// Absolute deadline on the loop clock (`f64::INFINITY` for none).
    pub deadline: f64,
    /// Invariant: `eff == cancel_called || (!shield && parent.eff)`.
    eff: bool,
    pub payload: S,
}

#[derive(Debug)]
pub struct TaskNode<T> {
    /// The innermost scope the task runs in (its own, or the group scope it was spawned into).
    scope: Option<ScopeKey>,
    /// Position of this task in `scope.tasks`.
    idx_in_scope: usize,
    /// While true the task receives no deliveries (a task-group host waiting for its
    /// children); `eff` is still reported truthfully.
    pub exempt: bool,
    /// Cancellations delivered with `Task.cancel()` and not yet balanced by `uncancel()`.
    pub delivered: u32,
    pub payload: T,
}

/// Why a scope could not be exited normally.
#[derive(Debug, PartialEq, Eq)]
pub enum ExitError {
    /// The scope is not active (it already exited, or the key is stale).
    NotActive,
    /// Another task than the host tried to exit it.
    WrongTask,
    /// Scopes entered later by the same task are still active.
    NotInnermost,
}

/// What the caller needs to finish an exit.
#[derive(Debug)]
pub struct Exited<S> {
    pub payload: S,
    pub cancel_called: bool,
    pub shield: bool,
    /// The host now runs in a scope that is effectively cancelled.
    pub parent_eff: bool,
    /// A cancellation from outside reaches this scope (parent effectively cancelled and this
    /// scope not shielded): such a scope must not swallow the `CancelledError`.
    pub parent_cancel_visible: bool,
}

pub struct ScopeTree<T, S> {
    scopes: SlotMap<ScopeKey, ScopeNode<S>>,
    tasks: SlotMap<TaskKey, TaskNode<T>>,
    /// Number of active scopes with `eff` set. Zero means no code of this tree's loop can be
    /// cancelled by a scope, which lets checkpoints skip looking up the current task. Every
    /// change is mirrored in `ANY_CANCELLED` (see `add_cancelled`).
    cancelled_scopes: usize,
}

/// The sum of `cancelled_scopes` over every tree of the process: zero means no scope anywhere
/// is effectively cancelled, which checkpoints read before they look for their tree at all.
static ANY_CANCELLED: AtomicUsize = AtomicUsize::new(0);

/// True when some scope of some tree may be effectively cancelled.
#[inline]
pub fn any_cancelled_anywhere() -> bool {
    ANY_CANCELLED.load(Ordering::Relaxed) != 0
}

impl<T, S> Default for ScopeTree<T, S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, S> Drop for ScopeTree<T, S> {
    fn drop(&mut self) {
        let n = self.cancelled_scopes;
        self.sub_cancelled(n);
    }
}

impl<T, S> ScopeTree<T, S> {
    pub fn new() -> Self {
        Self {
            scopes: SlotMap::with_key(),
            tasks: SlotMap::with_key(),
            cancelled_scopes: 0,
        }
    }

    // ----- tasks ------------------------------------------------------------------------

    /// Registers a task that runs in `scope` (the group scope for a child, `None` for a plain
    /// task). Returns the key and whether the task starts out effectively cancelled.
    pub fn add_task(&mut self, payload: T, scope: Option<ScopeKey>) -> (TaskKey, bool) {
        let key = self.tasks.insert(TaskNode {
            scope: None,
            idx_in_scope: 0,
            exempt: false,
            delivered: 0,
            payload,
        });
        let eff = match scope {
            Some(s) if self.scopes.contains_key(s) => {
                self.attach_task(key, s);
                self.scopes[s].eff
            }
            _ => false,
        };
        (key, eff)
    }

    /// Forgets a task. Scopes it left active (a scope never exited, e.g. its coroutine was
    /// dropped) are removed with it; their payloads are returned so the caller can release them.
    /// Child scopes of those (hosted by other tasks) are re-attached to the nearest surviving
    /// ancestor.
    pub fn remove_task(&mut self, key: TaskKey) -> Option<(T, Vec<S>)> {
        let leaked = self.unwind_own_scopes(key, None);
        let node = self.tasks.get(key)?;
        if let Some(s) = node.scope {
            self.detach_task(key, s);
        }
        let node = self.tasks.remove(key)?;
        Some((node.payload, leaked))
    }

    pub fn task(&self, key: TaskKey) -> Option<&TaskNode<T>> {
        self.tasks.get(key)
    }

    pub fn task_mut(&mut self, key: TaskKey) -> Option<&mut TaskNode<T>> {
        self.tasks.get_mut(key)
    }

    /// Innermost scope of a task.
    pub fn task_scope(&self, key: TaskKey) -> Option<ScopeKey> {
        self.tasks.get(key).and_then(|t| t.scope)
    }

    /// True when code running in this task is inside an effectively cancelled scope.
    #[inline]
    pub fn is_cancelled(&self, key: TaskKey) -> bool {
        self.tasks
            .get(key)
            .and_then(|t| t.scope)
            .is_some_and(|s| self.scopes[s].eff)
    }

    /// Moves a task (and its own scopes) under `new_parent`, as `TaskStatus.started()` does when
    /// a child of `TaskGroup.start()` joins its group. Returns the tasks that became cancelled.
    pub fn reparent_task(&mut self, key: TaskKey, new_parent: ScopeKey) -> Vec<TaskKey> {
        let mut out = Vec::new();
        if !self.scopes.contains_key(new_parent) || !self.tasks.contains_key(key) {
            return out;
        }
        match self.outermost_own_scope(key) {
            Some(root) => {
                if self.scopes[root].parent == Some(new_parent) {
                    return out;
                }
                self.unlink_scope(root);
                self.link_scope(root, new_parent);
                self.refresh(root, &mut out);
            }
            None => {
                if let Some(s) = self.tasks[key].scope {
                    if s == new_parent {
                        return out;
                    }
                    self.detach_task(key, s);
                }
                self.attach_task(key, new_parent);
                if self.scopes[new_parent].eff {
                    out.push(key);
                }
            }
        }
        out
    }

    // ----- scopes -----------------------------------------------------------------------

    pub fn scope(&self, key: ScopeKey) -> Option<&ScopeNode<S>> {
        self.scopes.get(key)
    }

    pub fn scope_mut(&mut self, key: ScopeKey) -> Option<&mut ScopeNode<S>> {
        self.scopes.get_mut(key)
    }

    /// Effective cancellation of a scope (see the invariant on `eff`).
    pub fn scope_is_cancelled(&self, key: ScopeKey) -> bool {
        self.scopes.get(key).is_some_and(|s| s.eff)
    }

    /// Enters a new scope in `task`. Returns the key and whether code in it starts out
    /// cancelled (the scope was cancelled before entry, or an unshielded ancestor is).
    pub fn enter(
        &mut self,
        task: TaskKey,
        cancel_called: bool,
        shield: bool,
        deadline: f64,
        payload: S,
    ) -> (ScopeKey, bool) {
        let parent = self.tasks[task].scope;
        let parent_eff = parent.is_some_and(|p| self.scopes[p].eff);
        let eff = cancel_called || (!shield && parent_eff);
        let key = self.scopes.insert(ScopeNode {
            parent: None,
            idx_in_parent: 0,
            children: Vec::new(),
            tasks: Vec::new(),
            host: task,
            cancel_called,
            shield,
            deadline,
            eff,
            payload,
        });
        self.add_cancelled(usize::from(eff));
        if let Some(p) = parent {
            self.link_scope(key, p);
            self.detach_task(task, p);
        }
        self.attach_task(task, key);
        (key, eff)
    }

    /// Exits `key` on behalf of `task`. On `NotInnermost` nothing changes: the caller decides
    /// whether to unwind with [`ScopeTree::unwind_own_scopes`].
    pub fn exit(&mut self, key: ScopeKey, task: TaskKey) -> Result<Exited<S>, ExitError> {
        let node = self.scopes.get(key).ok_or(ExitError::NotActive)?;
        if node.host != task {
            return Err(ExitError::WrongTask);
        }
        if self.tasks.get(task).and_then(|t| t.scope) != Some(key) {
            return Err(ExitError::NotInnermost);
        }
        Ok(self.remove_scope(key))
    }

    /// Removes every scope of `task` nested inside `until` (or all of the task's own scopes when
    /// `until` is `None`), innermost first, returning their payloads.
    pub fn unwind_own_scopes(&mut self, task: TaskKey, until: Option<ScopeKey>) -> Vec<S> {
        let mut out = Vec::new();
        while let Some(s) = self.tasks.get(task).and_then(|t| t.scope) {
            if Some(s) == until || self.scopes[s].host != task {
                break;
            }
            out.push(self.remove_scope(s).payload);
        }
        out
    }

    /// Every task running somewhere below `task`'s own scopes, other than `task` itself: the
    /// children of task groups it entered (and whatever they entered). They lose those scopes
    /// when `task` is removed.
    pub fn tasks_below(&self, task: TaskKey) -> Vec<TaskKey> {
        let mut out = Vec::new();
        let mut own = Vec::new();
        let mut cur = self.tasks.get(task).and_then(|t| t.scope);
        while let Some(s) = cur {
            if self.scopes[s].host != task {
                break;
            }
            own.push(s);
            cur = self.scopes[s].parent;
        }
        let mut stack = own;
        while let Some(s) = stack.pop() {
            let node = &self.scopes[s];
            out.extend(node.tasks.iter().copied().filter(|t| *t != task));
            stack.extend(
                node.children
                    .iter()
                    .copied()
                    .filter(|c| self.scopes[*c].host != task),
            );
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Marks a scope cancelled. Returns the tasks that became effectively cancelled (those
    /// already cancelled through an ancestor have had their delivery).
    pub fn cancel(&mut self, key: ScopeKey) -> Vec<TaskKey> {
        let mut out = Vec::new();
        let Some(node) = self.scopes.get_mut(key) else {
            return out;
        };
        node.cancel_called = true;
        if !node.eff {
            node.eff = true;
            self.add_cancelled(1);
            self.propagate(key, &mut out);
        }
        out
    }

    /// Changes a scope's shield. Returns the tasks that became effectively cancelled.
    pub fn set_shield(&mut self, key: ScopeKey, shield: bool) -> Vec<TaskKey> {
        let mut out = Vec::new();
        if let Some(node) = self.scopes.get_mut(key) {
            node.shield = shield;
            self.refresh(key, &mut out);
        }
        out
    }

    /// The scope whose cancellation reaches `task`: the nearest cancelled scope on its chain,
    /// not looking past a shield.
    pub fn cancel_origin(&self, task: TaskKey) -> Option<ScopeKey> {
        let mut cur = self.tasks.get(task)?.scope;
        while let Some(s) = cur {
            let node = &self.scopes[s];
            if !node.eff {
                return None;
            }
            if node.cancel_called {
                return Some(s);
            }
            cur = node.parent;
        }
        None
    }

    /// Deadline in effect for `task`: the minimum over its scope chain up to and including the
    /// first shielded scope; `-inf` if one of them is cancelled, `inf` if none.
    pub fn effective_deadline(&self, task: TaskKey) -> f64 {
        let mut deadline = f64::INFINITY;
        let mut cur = self.tasks.get(task).and_then(|t| t.scope);
        while let Some(s) = cur {
            let node = &self.scopes[s];
            if node.cancel_called {
                return f64::NEG_INFINITY;
            }
            deadline = deadline.min(node.deadline);
            if node.shield {
                break;
            }
            cur = node.parent;
        }
        deadline
    }

    /// True when some active scope is effectively cancelled.
    #[inline]
    pub fn any_cancelled(&self) -> bool {
        self.cancelled_scopes > 0
    }

    /// Removes everything, returning the payloads (a runtime being torn down).
    pub fn drain(&mut self) -> (Vec<T>, Vec<S>) {
        let tasks = std::mem::take(&mut self.tasks)
            .drain()
            .map(|(_, n)| n.payload)
            .collect();
        let scopes = std::mem::take(&mut self.scopes)
            .drain()
            .map(|(_, n)| n.payload)
            .collect();
        self.sub_cancelled(self.cancelled_scopes);
        (tasks, scopes)
    }

    pub fn task_payloads(&self) -> impl Iterator<Item = &T> {
        self.tasks.values().map(|n| &n.payload)
    }

    pub fn scope_payloads(&self) -> impl Iterator<Item = &S> {
        self.scopes.values().map(|n| &n.payload)
    }

    pub fn scope_count(&self) -> usize {
        self.scopes.len()
    }

    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    // ----- internals --------------------------------------------------------------------

    fn outermost_own_scope(&self, task: TaskKey) -> Option<ScopeKey> {
        let mut cur = self.tasks.get(task)?.scope?;
        if self.scopes[cur].host != task {
            return None;
        }
        while let Some(p) = self.scopes[cur].parent {
            if self.scopes[p].host != task {
                break;
            }
            cur = p;
        }
        Some(cur)
    }

    fn remove_scope(&mut self, key: ScopeKey) -> Exited<S> {
        let parent = self.scopes[key].parent;
        let host = self.scopes[key].host;
        // Re-home what hangs below the scope: other tasks' scopes and tasks (only when a scope
        // is torn down out of order; a normal exit has neither).
        let children = std::mem::take(&mut self.scopes[key].children);
        let tasks = std::mem::take(&mut self.scopes[key].tasks);
        self.unlink_scope(key);
        let mut out = Vec::new();
        for c in children {
            self.scopes[c].parent = None;
            if let Some(p) = parent {
                self.link_scope(c, p);
            }
            self.refresh(c, &mut out);
        }
        for t in tasks {
            self.tasks[t].scope = None;
            if let Some(p) = parent {
                self.attach_task(t, p);
            }
        }
        let node = self.scopes.remove(key).expect("scope present");
        self.sub_cancelled(usize::from(node.eff));
        debug_assert!(self.tasks.get(host).is_none_or(|t| t.scope != Some(key)));
        let parent_eff = parent.is_some_and(|p| self.scopes[p].eff);
        Exited {
            payload: node.payload,
            cancel_called: node.cancel_called,
            shield: node.shield,
            parent_eff,
            parent_cancel_visible: parent_eff && !node.shield,
        }
    }

    fn link_scope(&mut self, key: ScopeKey, parent: ScopeKey) {
        let idx = self.scopes[parent].children.len();
        self.scopes[parent].children.push(key);
        let node = &mut self.scopes[key];
        node.parent = Some(parent);
        node.idx_in_parent = idx;
    }

    fn unlink_scope(&mut self, key: ScopeKey) {
        let Some(parent) = self.scopes[key].parent.take() else {
            return;
        };
        let idx = self.scopes[key].idx_in_parent;
        let siblings = &mut self.scopes[parent].children;
        siblings.swap_remove(idx);
        if let Some(&moved) = siblings.get(idx) {
            self.scopes[moved].idx_in_parent = idx;
        }
    }

    fn attach_task(&mut self, task: TaskKey, scope: ScopeKey) {
        let list = &mut self.scopes[scope].tasks;
        let idx = list.len();
        list.push(task);
        let node = &mut self.tasks[task];
        node.scope = Some(scope);
        node.idx_in_scope = idx;
    }

    fn detach_task(&mut self, task: TaskKey, scope: ScopeKey) {
        let idx = self.tasks[task].idx_in_scope;
        let list = &mut self.scopes[scope].tasks;
        debug_assert_eq!(list.get(idx), Some(&task));
        list.swap_remove(idx);
        if let Some(&moved) = list.get(idx) {
            self.tasks[moved].idx_in_scope = idx;
        }
        self.tasks[task].scope = None;
    }

    fn add_cancelled(&mut self, n: usize) {
        if n > 0 {
            self.cancelled_scopes += n;
            ANY_CANCELLED.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn sub_cancelled(&mut self, n: usize) {
        if n > 0 {
            self.cancelled_scopes -= n;
            ANY_CANCELLED.fetch_sub(n, Ordering::Relaxed);
        }
    }

    fn count_flip(&mut self, eff: bool) {
        if eff {
            self.add_cancelled(1);
        } else {
            self.sub_cancelled(1);
        }
    }

    /// Recomputes `eff` of `key` from its parent and, if it flipped, its subtree.
    fn refresh(&mut self, key: ScopeKey, out: &mut Vec<TaskKey>) {
        let node = &self.scopes[key];
        let parent_eff = node.parent.is_some_and(|p| self.scopes[p].eff);
        let eff = node.cancel_called || (!node.shield && parent_eff);
        if eff != node.eff {
            self.scopes[key].eff = eff;
            self.count_flip(eff);
            self.propagate(key, out);
        }
    }

    /// `key.eff` just changed: push the change down and collect the tasks that became
    /// cancelled.
    fn propagate(&mut self, key: ScopeKey, out: &mut Vec<TaskKey>) {
        let mut stack = vec![key];
        while let Some(k) = stack.pop() {
            let eff = self.scopes[k].eff;
            if eff {
                out.extend(
                    self.scopes[k]
                        .tasks
                        .iter()
                        .copied()
                        .filter(|t| !self.tasks[*t].exempt),
                );
            }
            for i in 0..self.scopes[k].children.len() {
                let c = self.scopes[k].children[i];
                let child = &mut self.scopes[c];
                let new = child.cancel_called || (!child.shield && eff);
                if new != child.eff {
                    child.eff = new;
                    if new {
                        self.add_cancelled(1);
                    } else {
                        self.sub_cancelled(1);
                    }
                    stack.push(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Tree = ScopeTree<&'static str, u32>;

    fn enter(tree: &mut Tree, task: TaskKey, shield: bool) -> ScopeKey {
        tree.enter(task, false, shield, f64::INFINITY, 0).0
    }

    #[test]
    fn cancel_reaches_nested_scopes_and_child_tasks() {
        let mut tree = Tree::new();
        let (host, _) = tree.add_task("host", None);
        let outer = enter(&mut tree, host, false);
        let group = enter(&mut tree, host, false);
        let (child, eff) = tree.add_task("child", Some(group));
        assert!(!eff);
        let inner = enter(&mut tree, child, false);
        let mut hit = tree.cancel(outer);
        hit.sort();
        let mut expected = vec![host, child];
        expected.sort();
        assert_eq!(hit, expected);
        assert!(tree.is_cancelled(child));
        assert_eq!(tree.cancel_origin(child), Some(outer));
        // Cancelling an already effectively cancelled scope delivers nothing new.
        assert!(tree.cancel(inner).is_empty());
        assert_eq!(tree.cancel_origin(child), Some(inner));
    }

    #[test]
    fn shield_blocks_and_unshielding_delivers() {
        let mut tree = Tree::new();
        let (t, _) = tree.add_task("t", None);
        let outer = enter(&mut tree, t, false);
        let shielded = enter(&mut tree, t, true);
        assert!(tree.cancel(outer).is_empty());
        assert!(!tree.is_cancelled(t));
        assert_eq!(tree.set_shield(shielded, false), vec![t]);
        assert!(tree.is_cancelled(t));
        assert!(tree.set_shield(shielded, true).is_empty());
        assert!(!tree.is_cancelled(t));
        assert!(tree.any_cancelled(), "the outer scope is still cancelled");
        let exited = tree.exit(shielded, t).unwrap();
        assert!(exited.parent_eff);
        assert!(
            !exited.parent_cancel_visible,
            "a shielded scope sees no outer cancel"
        );
        assert!(tree.is_cancelled(t));
    }

    #[test]
    fn exit_checks_task_and_nesting() {
        let mut tree = Tree::new();
        let (a, _) = tree.add_task("a", None);
        let (b, _) = tree.add_task("b", None);
        let s1 = enter(&mut tree, a, false);
        let s2 = enter(&mut tree, a, false);
        assert_eq!(tree.exit(s1, b).unwrap_err(), ExitError::WrongTask);
        assert_eq!(tree.exit(s1, a).unwrap_err(), ExitError::NotInnermost);
        assert_eq!(tree.unwind_own_scopes(a, Some(s1)).len(), 1);
        assert!(tree.scope(s2).is_none());
        assert!(tree.exit(s1, a).is_ok());
        assert_eq!(tree.exit(s1, a).unwrap_err(), ExitError::NotActive);
        assert_eq!(tree.scope_count(), 0);
        assert!(!tree.any_cancelled());
    }

    #[test]
    fn exempt_tasks_are_not_collected() {
        let mut tree = Tree::new();
        let (host, _) = tree.add_task("host", None);
        let group = enter(&mut tree, host, false);
        let (child, _) = tree.add_task("child", Some(group));
        tree.task_mut(host).unwrap().exempt = true;
        assert_eq!(tree.cancel(group), vec![child]);
        assert!(tree.is_cancelled(host));
    }

    #[test]
    fn effective_deadline_stops_at_shield_and_reports_cancel() {
        let mut tree = Tree::new();
        let (t, _) = tree.add_task("t", None);
        let outer = tree.enter(t, false, false, 5.0, 0).0;
        let mid = tree.enter(t, false, true, 9.0, 0).0;
        let _inner = tree.enter(t, false, false, 7.0, 0).0;
        assert_eq!(tree.effective_deadline(t), 7.0);
        tree.set_shield(mid, false);
        assert_eq!(tree.effective_deadline(t), 5.0);
        tree.cancel(outer);
        assert_eq!(tree.effective_deadline(t), f64::NEG_INFINITY);
    }

    #[test]
    fn reparent_moves_a_started_child_into_the_group() {
        let mut tree = Tree::new();
        let (host, _) = tree.add_task("host", None);
        let caller_scope = enter(&mut tree, host, false);
        let group = enter(&mut tree, host, false);
        let (child, _) = tree.add_task("child", Some(caller_scope));
        let own = enter(&mut tree, child, false);
        tree.cancel(group);
        assert!(!tree.is_cancelled(child));
        assert_eq!(tree.reparent_task(child, group), vec![child]);
        assert_eq!(tree.scope(own).unwrap().parent, Some(group));
        assert!(tree.is_cancelled(child));
    }

    #[test]
    fn removing_a_task_releases_its_leaked_scopes() {
        let mut tree = Tree::new();
        let (host, _) = tree.add_task("host", None);
        let group = enter(&mut tree, host, false);
        let (child, _) = tree.add_task("child", Some(group));
        enter(&mut tree, child, false);
        enter(&mut tree, child, true);
        tree.cancel(group);
        assert!(tree.any_cancelled());
        let (_, leaked) = tree.remove_task(child).unwrap();
        assert_eq!(leaked.len(), 2);
        assert_eq!(tree.scope_count(), 1);
        assert!(tree.exit(group, host).is_ok());
        assert!(tree.remove_task(host).is_some());
        assert_eq!(tree.task_count(), 0);
        assert!(
            !tree.any_cancelled(),
            "the cancelled count follows removals"
        );
    }

    #[test]
    fn tasks_below_finds_group_children_and_their_own_scopes() {
        let mut tree = Tree::new();
        let (host, _) = tree.add_task("host", None);
        let group = enter(&mut tree, host, false);
        let (a, _) = tree.add_task("a", Some(group));
        let (b, _) = tree.add_task("b", Some(group));
        enter(&mut tree, b, false);
        let (other, _) = tree.add_task("other", None);
        let mut below = tree.tasks_below(host);
        below.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(below, expected);
        assert!(tree.tasks_below(other).is_empty());
    }

    #[test]
    fn drain_empties_the_tree() {
        let mut tree = Tree::new();
        let (host, _) = tree.add_task("host", None);
        let outer = enter(&mut tree, host, false);
        tree.add_task("child", Some(outer));
        tree.cancel(outer);
        let (tasks, scopes) = tree.drain();
        assert_eq!((tasks.len(), scopes.len()), (2, 1));
        assert_eq!((tree.task_count(), tree.scope_count()), (0, 0));
        assert!(!tree.any_cancelled());
    }

    #[test]
    fn many_children_detach_in_any_order() {
        let mut tree = Tree::new();
        let (host, _) = tree.add_task("host", None);
        let group = enter(&mut tree, host, false);
        let kids: Vec<_> = (0..100)
            .map(|_| tree.add_task("c", Some(group)).0)
            .collect();
        for (i, k) in kids.iter().enumerate() {
            if i % 3 == 0 {
                tree.remove_task(*k);
            }
        }
        let hit = tree.cancel(group);
        assert_eq!(
            hit.len(),
            1 + kids.iter().enumerate().filter(|(i, _)| i % 3 != 0).count()
        );
        for (i, k) in kids.iter().enumerate() {
            if i % 3 != 0 {
                tree.remove_task(*k);
            }
        }
        assert_eq!(tree.task_count(), 1);
    }
}
