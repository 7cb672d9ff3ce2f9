"""Automation conditions shared by the assets and their checks."""

from dagster import AutomationCondition

# eager(), but "a dependency was updated" means its *data version* changed, or it is requested
# on this very tick. Data versions: a rematerialization that produced the same data (a no-op
# refresh, a freshness re-check) triggers nothing downstream, where eager() alone would re-run
# everything below it. Requested on this tick (Dagster's own eager() has it too): embeddings,
# serving_index and their checks of one partition are requested together and so land in ONE run,
# instead of one run per asset, each a tick apart. A target updated in the same run as its
# dependency is not requested again: `since_last_handled` resets on the target's own update.
ANY_DEP_CHANGED = AutomationCondition.any_deps_match(
    AutomationCondition.data_version_changed() | AutomationCondition.will_be_requested()
).with_label("any_deps_changed_or_requested")

ON_UPSTREAM_CHANGE = (
    AutomationCondition.eager()
    .replace("any_deps_updated", ANY_DEP_CHANGED)
    .with_label("eager_on_data_version_change")
)
