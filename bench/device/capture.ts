/**
 * Bytes on the wire, counted by the kernel's view of the loopback: tcpdump writes every packet to or from the given
 * server ports to a pcap file, and this reads it back (the pcap format is a 24-byte header, then a 16-byte header per
 * packet). A packet's size is its IP packet (IP + TCP headers with options, TLS records, MQTT/HTTP): the captured
 * length on `lo` less its 14-byte Ethernet header. tcpdump needs CAP_NET_RAW (root here; `setcap` on tcpdump elsewhere).
 */
import { readFileSync, rmSync } from "node:fs";

export interface Packet {
  /** Capture time, epoch milliseconds. */
  atMs: number;
  /** IP packet bytes. */
  bytes: number;
  /** From the phone to the server (towards one of the server ports). */
  up: boolean;
}

export interface Capture {
  stop(): Promise<Packet[]>;
}

const LINKTYPE_ETHERNET = 1;
const ETHERNET_HEADER = 14;

export function parsePcap(buffer: Uint8Array, serverPorts: readonly number[]): Packet[] {
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const magic = view.getUint32(0, true);
  const little = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!little && view.getUint32(0, false) !== 0xa1b2c3d4 && view.getUint32(0, false) !== 0xa1b23c4d) throw new Error("not a pcap file");
  const nano = (little ? magic : view.getUint32(0, false)) === 0xa1b23c4d;
  if (view.getUint32(20, little) !== LINKTYPE_ETHERNET) throw new Error("expected an Ethernet link type (tcpdump -i lo)");
  const packets: Packet[] = [];
  let at = 24;
  while (at + 16 <= buffer.length) {
    const seconds = view.getUint32(at, little);
    const fraction = view.getUint32(at + 4, little);
    const captured = view.getUint32(at + 8, little);
    const original = view.getUint32(at + 12, little);
    const frame = at + 16;
    // IPv4: header length from the first byte; TCP ports right after the IP header.
    const ipHeader = (buffer[frame + ETHERNET_HEADER]! & 0x0f) * 4;
    const tcp = frame + ETHERNET_HEADER + ipHeader;
    const dstPort = tcp + 4 <= frame + captured ? view.getUint16(tcp + 2, false) : -1;
    packets.push({
      atMs: seconds * 1000 + (nano ? fraction / 1e6 : fraction / 1e3),
      bytes: original - ETHERNET_HEADER,
      up: serverPorts.includes(dstPort),
    });
    at = frame + captured;
  }
  return packets;
}

/** Starts tcpdump on `lo` for TCP to or from the ports; resolves once it is capturing. */
export async function startCapture(file: string, serverPorts: readonly number[]): Promise<Capture> {
  const filter = serverPorts.map((p) => `tcp port ${p}`).join(" or ");
  const proc = Bun.spawn(["tcpdump", "-i", "lo", "-n", "-U", "-s", "128", "-w", file, filter], { stdout: "ignore", stderr: "pipe" });
  const reader = (proc.stderr as ReadableStream<Uint8Array>).getReader();
  let seen = "";
  while (!seen.includes("listening on")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`tcpdump exited: ${seen}`);
    seen += new TextDecoder().decode(value);
  }
  return {
    async stop() {
      // Let the last packets reach the file (-U flushes per packet), then stop tcpdump cleanly.
      await Bun.sleep(200);
      proc.kill("SIGINT");
      await proc.exited;
      const packets = parsePcap(readFileSync(file), serverPorts);
      rmSync(file, { force: true });
      return packets;
    },
  };
}
