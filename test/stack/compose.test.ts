// docker-compose.yml cannot run here (no Docker engine), but it must be a valid file with the parts DESIGN.md names.
import { expect, test } from "bun:test";

test("docker-compose.yml validates and wires every part with health checks", async () => {
  const root = new URL("../../", import.meta.url).pathname;
  const proc = Bun.spawn(["docker-compose", "-f", `${root}docker-compose.yml`, "config", "--services"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const services = (await new Response(proc.stdout).text()).trim().split("\n").sort();
  expect(await proc.exited).toBe(0);
  expect(services).toEqual(
    ["api", "bridge", "kafka", "kafka-topics", "migrate", "mosquitto", "positions", "postgres"].sort(),
  );
  const file = await Bun.file(`${root}docker-compose.yml`).text();
  for (const name of ["DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPIC", "MQTT_URL", "API_PORT", "H3_RESOLUTION"]) {
    expect(file).toContain(`${name}:`);
  }
  expect(file.match(/condition: service_healthy/g)?.length).toBeGreaterThanOrEqual(3);
});
