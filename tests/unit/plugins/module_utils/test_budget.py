"""Choosing the packages of a snapshot within a size budget (_budget, pure)."""

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _budget as bg

GB = 10 ** 9
MB = 10 ** 6


def cand(spec, score, **files):
    return {'spec': spec, 'score': score, 'files': files}


def test_no_budget_takes_everything_in_list_order():
    c = [cand('a', 1, x=5), cand('b', 0.5, y=7)]
    assert bg.choose(c) == (['a', 'b'], [], 12)


def test_the_giant_is_left_out_and_the_reason_names_its_closure():
    # sglang's shape: popular enough, but its closure alone is most of the budget.
    c = [cand('boto3', 1.0, boto3=MB, botocore=12 * MB),
         cand('sglang', 0.5, sglang=3 * MB, torch=4170 * MB, fastapi=MB),
         cand('fastapi', 0.3, fastapi=MB, pydantic=2 * MB),
         cand('django', 0.1, django=8 * MB)]
    chosen, left, total = bg.choose(c, max_bytes=1 * GB)
    assert chosen == ['boto3', 'fastapi', 'django']
    assert total == 13 * MB + 3 * MB + 8 * MB
    assert [(x['package'], x['reason'], x['closure_bytes']) for x in left] == [('sglang', 'budget', 4174 * MB)]
    assert left[0]['why'] == 'sglang: 4.17 GB closure, left out by the budget of 1 GB'


def test_shared_dependencies_already_in_cost_nothing():
    # b alone is big, but once a (which brings the shared lib) is in, b adds only its own 1 MB.
    c = [cand('a', 1.0, lib=50 * MB, a=MB), cand('b', 0.01, lib=50 * MB, b=MB), cand('c', 0.5, c=10 * MB)]
    chosen, left, total = bg.choose(c, max_bytes=52 * MB)
    assert chosen == ['a', 'b'] and total == 52 * MB
    assert [x['package'] for x in left] == ['c'] and left[0]['added_bytes'] == 10 * MB


def test_ratio_prefers_bytes_saved_per_byte_stored():
    # Same score: the small package saves less but per byte stored the same; a package whose closure is
    # mostly already in wins over an equally popular one that would add everything.
    c = [cand('big', 1.0, big=90 * MB), cand('shares', 1.0, big=90 * MB, s=5 * MB), cand('other', 1.0, o=60 * MB)]
    chosen, left, total = bg.choose(c, max_bytes=100 * MB)
    assert chosen == ['big', 'shares'] and [x['package'] for x in left] == ['other']


def test_a_package_that_did_not_fit_is_taken_once_others_bring_its_dependencies():
    c = [cand('x', 0.1, torch=80, x=1), cand('t', 1.0, torch=80), cand('y', 0.05, y=19)]
    chosen, left, total = bg.choose(c, max_bytes=100)
    assert chosen == ['x', 't', 'y'] and total == 100 and left == []


def test_the_per_project_cap_and_unknown_sizes():
    c = [cand('a', 1, a=10), cand('huge', 1, h=3 * GB), cand('odd', 1, o=None, a=10)]
    chosen, left, total = bg.choose(c, max_project_bytes=2 * GB)
    assert chosen == ['a']
    assert [(x['package'], x['reason']) for x in left] == [('huge', 'cap'), ('odd', 'size unknown')]
    assert left[0]['why'] == 'huge: 3 GB closure, over the per-project cap of 2 GB'
    assert 'the size of o is unknown' in left[1]['why']


def test_scores_given_or_by_rank():
    assert bg.rank_scores(['a', 'b', 'c', 'd']) == {'a': 1.0, 'b': 0.5, 'c': 1 / 3.0, 'd': 0.25}
    s = bg.rank_scores(['a', 'b==1', 'c'], {'a': 10, 'b==1': 30})
    assert s['b==1'] == 30 and s['a'] == 10 and 0 < s['c'] < 10


@pytest.mark.parametrize('size,text', [(0, '0 B'), (999, '999 B'), (81800, '81.8 kB'), (348210, '348 kB'),
                                       (4180000000, '4.18 GB'), (10 ** 9, '1 GB')])
def test_human_sizes(size, text):
    assert bg.human(size) == text
