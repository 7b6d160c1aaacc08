//go:build strata_bench

package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/storagetest"
)

func init() { groups = append(groups, catalogBenches) }

const (
	etcdListTitle   = "snapshot list, one guest among 10,000 points: etcd catalog against bbolt"
	etcdCreateTitle = "volume create (1M raw): etcd catalog against bbolt"
)

// catalogBenches: the same commands with the catalog on etcd (a
// single-member etcd on loopback, started here) and in the bbolt file.
// Goal: within 3x. An etcd command pays its lease, its operation lock and
// a round trip per read where bbolt maps a file.
func catalogBenches(e env, rounds int) ([]comparison, func([]row) []flat) {
	if !e.want(etcdListTitle) && !e.want(etcdCreateTitle) {
		return nil, nil
	}
	srv, err := storagetest.StartEtcd()
	if err != nil {
		fatal("etcd: %v", err)
	}
	atExit = append(atExit, srv.Stop)
	url := "etcd://" + srv.Endpoint + "/strata-bench"
	bolt := filepath.Join(e.dir, "home-cat-bbolt")
	shared := filepath.Join(e.dir, "home-cat-etcd")
	with := func(home string) []string {
		if home == shared {
			return []string{e.strata, "--home", home, "--catalog", url, "--log-level", "warn"}
		}
		return []string{e.strata, "--home", home, "--log-level", "warn"}
	}
	var cs []comparison
	if e.want(etcdListTitle) {
		for _, home := range []string{bolt, shared} {
			for g := 0; g < 100; g++ {
				run(append(with(home), "guest", "define", fmt.Sprintf("g%03d", g), "--memory", "2048", "--vcpus", "2", "--os", "win2003",
					"--nic", "bridge=xenbr0,model=e1000", "--vnc", "--tablet", "--viridian", "--boot", "dc", "--on-crash", "restart")...)
			}
			o := catalog.Options{}
			if home == shared {
				o.URL = url
			}
			addPoints(home, o)
		}
		cs = append(cs, comparison{
			title: etcdListTitle, reference: "bbolt: strata snapshot list g050", rounds: rounds,
			targets: map[string]float64{"etcd: strata snapshot list g050": 3},
			contenders: []contender{
				{name: "bbolt: strata snapshot list g050", prepare: func(int) []string { return append(with(bolt), "snapshot", "list", "g050") }},
				{name: "etcd: strata snapshot list g050", prepare: func(int) []string { return append(with(shared), "snapshot", "list", "g050") }},
			},
		})
	}
	if e.want(etcdCreateTitle) {
		n := 0
		create := func(home string) func(int) []string {
			return func(int) []string {
				n++
				return append(with(home), "volume", "create", fmt.Sprintf("bench-%d", n), "--size", "1M")
			}
		}
		cs = append(cs, comparison{
			title: etcdCreateTitle, reference: "bbolt: strata volume create", rounds: rounds,
			targets: map[string]float64{"etcd: strata volume create": 3},
			contenders: []contender{
				{name: "bbolt: strata volume create", prepare: create(bolt)},
				{name: "etcd: strata volume create", prepare: create(shared)},
			},
		})
	}
	return cs, nil
}

// addPoints gives every guest of home 100 restore points, straight into
// its catalog (o: a shared one's address).
func addPoints(home string, o catalog.Options) {
	cat, err := catalog.OpenWith(home, time.Minute, o)
	if err != nil {
		fatal("%v", err)
	}
	defer cat.Close()
	var guests []string
	if err := cat.View(func(tx *catalog.Tx) error {
		gs, err := tx.Guests()
		for _, g := range gs {
			guests = append(guests, g.Name)
		}
		return err
	}); err != nil {
		fatal("%v", err)
	}
	for _, name := range guests { // one transaction per guest: etcd bounds a transaction's size
		if err := cat.Update(func(tx *catalog.Tx) error {
			g, err := tx.Guest(name)
			if err != nil {
				return err
			}
			return snapshot.PutSyntheticPoints(tx, snapshot.Target{Key: catalog.GuestKey(g.ID), Name: g.Name}, 100, time.Now().Add(-time.Hour*24*30))
		}); err != nil {
			fatal("%v", err)
		}
	}
}
