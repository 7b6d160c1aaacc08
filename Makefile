# strata: make demo | make test | make bench (see README.md)
GO      ?= go
# A static binary starts faster (no dynamic loader) and runs anywhere.
export CGO_ENABLED := 0
BIN     := bin/strata
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# urfave_cli_no_docs leaves out urfave/cli's man-page generator, whose
# markdown library costs every strata command 0.4 ms of start-up.
TAGS    := urfave_cli_no_docs

# CHECK=PACKAGE pairs for .ci/deps: what each target needs on the machine.
# The test guest (cmd/strata-testguest, hvm/boot/boottest): its kernel and
# busybox-static are downloaded with apt-get at build time, not installed;
# so are lvm2, dmsetup and thin-provisioning-tools for the LVM test guest
# (storage/lvm TestRealLVMInAGuest: the host has no device-mapper).
GUEST_DEPS := apt-get=apt dpkg-deb=dpkg qemu-system-x86_64=qemu-system-x86 \
	/usr/lib/ISOLINUX/isolinux.bin=isolinux /usr/lib/syslinux/modules/bios/ldlinux.c32=syslinux-common
DEMO_DEPS := qemu-img=qemu-utils sfdisk=fdisk mdir=mtools $(GUEST_DEPS)
TEST_DEPS := $(DEMO_DEPS) qemu-io=qemu-utils qemu-system-x86_64=qemu-system-x86 \
	xorriso=xorriso bsdtar=libarchive-tools zsh=zsh fish=fish man=man-db mkfs.xfs=xfsprogs mkfs.btrfs=btrfs-progs mkfs.ext4=e2fsprogs \
	losetup=mount strace=strace virsh=libvirt-clients virt-xml-validate=libvirt-clients xmllint=libxml2-utils \
	/usr/sbin/libvirtd=libvirt-daemon /usr/sbin/virtlogd=libvirt-daemon /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so=libvirt-daemon-driver-qemu \
	/usr/lib/ISOLINUX/isolinux.bin=isolinux /usr/lib/syslinux/modules/bios/ldlinux.c32=syslinux-common \
	/usr/bin/etcd=etcd-server \
	ceph-mon=ceph-mon ceph-osd=ceph-osd rbd=ceph-common /usr/lib/x86_64-linux-gnu/qemu/block-rbd.so=qemu-block-extra \
	/usr/lib/x86_64-linux-gnu/librados.so.2=librados2 /usr/lib/x86_64-linux-gnu/librbd.so.1=librbd1
BENCH_DEPS := $(DEMO_DEPS) /usr/bin/time=time xorriso=xorriso mkfs.xfs=xfsprogs qemu-io=qemu-utils /usr/bin/etcd=etcd-server \
	ceph-mon=ceph-mon ceph-osd=ceph-osd rbd=ceph-common /usr/lib/x86_64-linux-gnu/qemu/block-rbd.so=qemu-block-extra \
	/usr/lib/x86_64-linux-gnu/librados.so.2=librados2 /usr/lib/x86_64-linux-gnu/librbd.so.1=librbd1
SOAK_DEPS  := qemu-img=qemu-utils qemu-io=qemu-utils xorriso=xorriso mkfs.xfs=xfsprogs mkfs.ext4=e2fsprogs losetup=mount
# make soak runs for SOAK_DURATION, or SOAK_TRIALS kill trials if given.
SOAK_DURATION ?= 30m
SOAK_TRIALS   ?=
SOAK_FLAGS    ?=

.PHONY: all build demo test test-deps bench soak vet fmt clean man

all: build

# bin/strata-rbd, strata's Ceph helper, beside it: the only program that
# loads librados/librbd (at run time, still CGO_ENABLED=0; it is
# dynamically linked). strata runs it only from its own directory.
build:
	$(GO) build -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/strata
	$(GO) build -o bin/strata-rbd ./cmd/strata-rbd

demo: build
	@./.ci/deps $(DEMO_DEPS)
	$(GO) build -o bin/strata-testguest ./cmd/strata-testguest
	@./.ci/demo.sh $(BIN) bin/strata-testguest

# strata(1), from the CLI's own definition; the generator is built only
# here (tag strata_man), never into bin/strata.
man:
	@mkdir -p bin
	$(GO) run -tags strata_man ./cmd/strata __man > bin/strata.1.tmp && mv bin/strata.1.tmp bin/strata.1

test-deps:
	@./.ci/deps $(TEST_DEPS)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above are not formatted"; exit 1; }
	$(GO) vet -tags $(TAGS),strata_bench ./...

test: test-deps vet
	$(GO) test -tags $(TAGS) -count=1 -timeout 40m ./...

# cmd/strata-bench (and the synthetic restore points it makes) is built
# only with the tag strata_bench, never into bin/strata.
bench: build
	@./.ci/deps $(BENCH_DEPS)
	$(GO) run -tags strata_bench ./cmd/strata-bench -strata $(BIN)

# Random kills, concurrency and real ENOSPC against bin/strata; prints
# trials, kills and losses and fails on any loss (README: Soak).
soak: build
	@./.ci/deps $(SOAK_DEPS)
	$(GO) run ./cmd/strata-soak -strata $(BIN) $(if $(SOAK_TRIALS),-trials $(SOAK_TRIALS),-duration $(SOAK_DURATION)) $(SOAK_FLAGS)

clean:
	rm -rf bin
