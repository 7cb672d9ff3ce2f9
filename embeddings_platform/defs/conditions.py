"""Automation conditions shared by the assets and their checks."""

from dagster import AutomationCondition

# "A dependency was updated" means its *data version* changed, or it is requested on this very
# tick. Data versions: a rematerialization that produced the same data (a no-op refresh, a
# freshness re-check) triggers nothing downstream, where eager() alone would re-run everything
# below it. Requested on this tick (Dagster's own eager() has it too): embeddings,
# serving_index and their checks of one partition are requested together and so land in ONE
# run, instead of one run per asset, each a tick apart.
ANY_DEP_CHANGED = AutomationCondition.any_deps_match(
    AutomationCondition.data_version_changed() | AutomationCondition.will_be_requested()
).with_label("any_deps_changed_or_requested")

ON_UPSTREAM_CHANGE = (
    AutomationCondition.eager()
    .replace("any_deps_updated", ANY_DEP_CHANGED)
    .with_label("eager_on_data_version_change")
)

# Checks: only when the checked asset's data changed (or is being rebuilt in the same run).
# eager()'s other trigger, newly_missing, would request every check after each
# rematerialization that ran without its checks (a check counts as missing until it has
# evaluated the newest materialization), data changed or not.
AFTER_DATA_CHANGE = (
    AutomationCondition.in_latest_time_window()
    & ANY_DEP_CHANGED.since_last_handled()
    & ~AutomationCondition.any_deps_missing()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("after_data_version_change")
