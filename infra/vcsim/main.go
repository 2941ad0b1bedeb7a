// provenflow-vcsim: govmomi's vCenter simulator (simulator.VPX()) on a given 127.0.0.1 port, for
// provenflow's tests and for trying the vSphere worker pool without a vCenter.
//
// Built in GOPATH mode from Debian's golang-github-vmware-govmomi-dev (see .ci/vcsim.sh):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o build/vcsim/provenflow-vcsim ./infra/vcsim
//
// It serves plain HTTP (pyvmomi: protocol="http"), accepts only the given user and password, and
// prints one line, "PROVENFLOW_VCSIM_URL=http://127.0.0.1:PORT/sdk", once it answers.
//
// Like VMware Tools in a booted guest, it reports a guest IP address (192.0.2.N, a documentation range)
// a moment (-guest-ip-delay) after a virtual machine with a network card powers on, and clears it at
// power-off; vcsim alone reports none.
//
// Fault injection for tests: POST /provenflow/faults?vm=NAME&method=PowerOnVM_Task disables that
// method on the next virtual machine a task creates under NAME (a clone, for example), the way vCenter
// disables methods on a VM that a solution manages: the call then fails with a MethodDisabled fault,
// after the clone exists. DELETE /provenflow/faults clears what is armed.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// guestIPs reports a guest IP address for powered-on VMs, as VMware Tools would.
type guestIPs struct {
	delay time.Duration
	mu    sync.Mutex
	next  int
}

func (g *guestIPs) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "ProvenflowGuestIPs", Value: "guest-ips"}
}

func (g *guestIPs) PutObject(mo.Reference)                    {}
func (g *guestIPs) RemoveObject(types.ManagedObjectReference) {}

func (g *guestIPs) UpdateObject(obj mo.Reference, changes []types.PropertyChange) {
	for _, change := range changes {
		if change.Name != "runtime.powerState" {
			continue
		}
		ref := obj.Reference()
		switch fmt.Sprint(change.Val) {
		case string(types.VirtualMachinePowerStatePoweredOn):
			g.mu.Lock()
			g.next++
			ip := fmt.Sprintf("192.0.2.%d", 10+g.next%240)
			g.mu.Unlock()
			go func() {
				time.Sleep(g.delay)
				setGuestIP(ref, ip, types.VirtualMachinePowerStatePoweredOn)
			}()
		case string(types.VirtualMachinePowerStatePoweredOff):
			go setGuestIP(ref, "", types.VirtualMachinePowerStatePoweredOff)
		}
	}
}

// setGuestIP sets (or clears) the first NIC's address if the VM still exists in the expected power state.
func setGuestIP(ref types.ManagedObjectReference, ip string, state types.VirtualMachinePowerState) {
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	simulator.Map.WithLock(vm, func() {
		if vm.Runtime.PowerState != state || vm.Guest == nil || len(vm.Guest.Net) == 0 {
			return
		}
		addresses := []string{}
		if ip != "" {
			addresses = []string{ip}
		}
		vm.Guest.Net[0].IpAddress = addresses
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "guest.ipAddress", Val: ip},
			{Name: "summary.guest.ipAddress", Val: ip},
			{Name: "guest.net", Val: vm.Guest.Net},
		})
	})
}

// faults arms disabled methods for virtual machines that do not exist yet, by name.
type faults struct {
	mu    sync.Mutex
	armed map[string][]string // VM name -> simulator method names (PowerOnVMTask, ReconfigVMTask, ...)
}

func (f *faults) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "ProvenflowFaults", Value: "faults"}
}

func (f *faults) PutObject(mo.Reference)                    {}
func (f *faults) RemoveObject(types.ManagedObjectReference) {}

// UpdateObject sees every task finish; a clone (or create) that produced an armed VM gets its fault,
// before the client learns that the task succeeded. (At PutObject time a new VM has no name yet.)
func (f *faults) UpdateObject(obj mo.Reference, changes []types.PropertyChange) {
	if obj.Reference().Type != "Task" {
		return
	}
	for _, change := range changes {
		if change.Name != "info.result" {
			continue
		}
		var ref types.ManagedObjectReference
		switch result := change.Val.(type) {
		case types.ManagedObjectReference:
			ref = result
		case *types.ManagedObjectReference:
			ref = *result
		default:
			continue
		}
		vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		f.mu.Lock()
		methods := f.armed[vm.Name]
		delete(f.armed, vm.Name)
		f.mu.Unlock()
		if len(methods) > 0 {
			vm.DisabledMethod = append(vm.DisabledMethod, methods...)
			log.Printf("provenflow-vcsim: disabled %v on %s", methods, vm.Name)
		}
	}
}

// simulatorName turns a vSphere method name (PowerOnVM_Task) into the simulator's (PowerOnVMTask).
func simulatorName(method string) string {
	if strings.HasSuffix(method, "_Task") {
		return strings.TrimSuffix(method, "_Task") + "Task"
	}
	return method
}

func (f *faults) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		name, method := r.URL.Query().Get("vm"), r.URL.Query().Get("method")
		if name == "" || method == "" {
			http.Error(w, "need ?vm=NAME&method=METHOD", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.armed[name] = append(f.armed[name], simulatorName(method))
		f.mu.Unlock()
		fmt.Fprintf(w, "armed %s on %s\n", method, name)
	case http.MethodDelete:
		f.mu.Lock()
		f.armed = map[string][]string{}
		f.mu.Unlock()
		fmt.Fprintln(w, "cleared")
	default:
		http.Error(w, "POST or DELETE", http.StatusMethodNotAllowed)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (host:port; port 0 picks a free one)")
	username := flag.String("username", "user", "the only user name accepted")
	password := flag.String("password", "pass", "the only password accepted")
	ipDelay := flag.Duration("guest-ip-delay", 300*time.Millisecond, "how long after power-on a guest IP shows (negative: never)")
	flag.Parse()

	model := simulator.VPX()
	if err := model.Create(); err != nil {
		log.Fatalf("provenflow-vcsim: cannot create the inventory: %v", err)
	}
	injector := &faults{armed: map[string][]string{}}
	simulator.Map.AddHandler(injector)
	if *ipDelay >= 0 {
		simulator.Map.AddHandler(&guestIPs{delay: *ipDelay})
	}
	model.Service.HandleFunc("/provenflow/faults", injector.serveHTTP)
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*username, *password)}

	server := model.Service.NewServer()
	address := *server.URL
	address.User = nil
	fmt.Printf("PROVENFLOW_VCSIM_URL=%s\n", address.String())
	os.Stdout.Sync()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	server.Close()
	model.Remove()
}
