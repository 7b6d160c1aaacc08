#!/usr/bin/env bash
# Records the rbd outputs storage/rbd's unit tests read. Run against a
# scratch single-node cluster (CEPH_CONF set; pool "rbd" initialised):
#   CEPH_CONF=/path/ceph.conf ./record.sh
# Each case writes NAME.out (stdout), NAME.err (stderr) and NAME.rc.
set -u
cd "$(dirname "$0")"
rec() { local name=$1; shift; "$@" >"$name.out" 2>"$name.err"; echo $? >"$name.rc"; }
rbd --version >version.txt
rbd rm --no-progress rbd/rec-img rbd/rec-clone 2>/dev/null
rbd create --size 4194304B --image-feature layering,exclusive-lock,object-map,fast-diff,deep-flatten rbd/rec-img
qemu-io -f raw -c "write -P 0x5a 0 64k" rbd:rbd/rec-img >/dev/null
rbd snap create --no-progress rbd/rec-img@strata-000000000001
rbd snap create --no-progress rbd/rec-img@strata-golden
rbd snap protect rbd/rec-img@strata-golden
rbd clone rbd/rec-img@strata-golden rbd/rec-clone
rec info rbd info --format json rbd/rec-img
rec info-clone rbd info --format json rbd/rec-clone
rec snap-ls rbd snap ls --format json rbd/rec-img
rec children rbd children --format json rbd/rec-img@strata-golden
rec du rbd du --format json rbd/rec-img
rec status rbd status --format json rbd/rec-img
rec diff rbd diff --whole-object --format json rbd/rec-img
rados --pool rbd rm strata_restored 2>/dev/null
rec gen-no-object rados --pool rbd getomapval strata_restored rec-img /dev/stdout
rados --pool rbd setomapval strata_restored other-img 0123456789abcdef
rec gen-no-key rados --pool rbd getomapval strata_restored rec-img /dev/stdout
rados --pool rbd setomapval strata_restored rec-img 0123456789abcdef
rec gen rados --pool rbd getomapval strata_restored rec-img /dev/stdout
rados --pool rbd rm strata_restored
rec pool-stats rbd pool stats --format json rbd
rec info-missing rbd info --format json rbd/no-such-image
rec create-exists rbd create --size 4194304B rbd/rec-img
rec rm-with-snaps rbd rm --no-progress rbd/rec-img
rec snap-rm-protected rbd snap rm --no-progress rbd/rec-img@strata-golden
rec unprotect-children rbd snap unprotect rbd/rec-img@strata-golden
rec clone-unprotected rbd clone rbd/rec-img@strata-000000000001 rbd/rec-bad
sed 's/^mon_host = .*/mon_host = v2:127.0.0.1:1/' "$CEPH_CONF" >/tmp/rec-bad.conf
rec unreachable rbd --client-mount-timeout 2 --conf /tmp/rec-bad.conf ls --format json rbd
rbd rm --no-progress rbd/rec-clone
rbd snap unprotect rbd/rec-img@strata-golden
rbd snap purge --no-progress rbd/rec-img
rbd rm --no-progress rbd/rec-img
