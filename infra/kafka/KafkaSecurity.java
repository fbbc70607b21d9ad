/*
 * Kafka's users and ACLs, made what the stack says in one JVM (the stock tools take ~2 s each, one user or one
 * principal per run). Run by bin/stack at each `up`, with Kafka's own admin client, logged in as the static PLAIN
 * user `controller` (a cluster formatted before SCRAM existed has no SCRAM user yet that could log in):
 *
 *   java -cp 'libs/*' KafkaSecurity.java <admin-client.properties> <acls.conf> <user>=<ENV_VAR_WITH_PASSWORD>...
 *
 * Users: SCRAM-SHA-512 credentials upserted every time (idempotent; a changed secret is a rotation). Passwords are
 * read from the environment, never from argv (which `ps` shows). ACLs: acls.conf is the whole list; bindings missing
 * on the broker are created, bindings the file does not hold are deleted, so a removed line is a revoked right.
 */
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaSecurity {
  // Kafka's floor for SHA-512 is 4096; twice that still costs well under a millisecond per login here.
  static final int ITERATIONS = 4096;

  public static void main(String[] args) throws Exception {
    if (args.length < 2) throw new IllegalArgumentException("usage: KafkaSecurity <admin.properties> <acls.conf> user=ENV...");
    Properties props = new Properties();
    try (var in = Files.newInputStream(Path.of(args[0]))) {
      props.load(in);
    }
    List<AclBinding> wanted = readAcls(Path.of(args[1]));
    List<UserScramCredentialAlteration> users = new ArrayList<>();
    for (int i = 2; i < args.length; i++) {
      String[] pair = args[i].split("=", 2);
      String password = pair.length == 2 ? System.getenv(pair[1]) : null;
      if (password == null || password.isEmpty()) throw new IllegalArgumentException("no password in $" + (pair.length == 2 ? pair[1] : args[i]));
      users.add(new UserScramCredentialUpsertion(pair[0], new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS), password));
    }

    try (Admin admin = Admin.create(props)) {
      if (!users.isEmpty()) admin.alterUserScramCredentials(users).all().get();

      Set<AclBinding> present = new HashSet<>(admin.describeAcls(AclBindingFilter.ANY).values().get());
      List<AclBinding> missing = wanted.stream().filter(b -> !present.contains(b)).toList();
      Set<AclBinding> wantedSet = new HashSet<>(wanted);
      List<AclBindingFilter> stale = present.stream().filter(b -> !wantedSet.contains(b)).map(AclBinding::toFilter).toList();
      if (!missing.isEmpty()) admin.createAcls(missing).all().get();
      if (!stale.isEmpty()) admin.deleteAcls(stale).all().get();
      System.out.printf("kafka security: %d users upserted, %d ACLs (%d added, %d removed)%n",
          users.size(), wanted.size(), missing.size(), stale.size());
    }
  }

  /** Lines of `principal resource pattern name op[,op…]`; `#` starts a comment. */
  static List<AclBinding> readAcls(Path file) throws Exception {
    List<AclBinding> out = new ArrayList<>();
    int lineNo = 0;
    for (String raw : Files.readAllLines(file)) {
      lineNo++;
      String line = raw.replaceAll("#.*", "").trim();
      if (line.isEmpty()) continue;
      String[] f = line.split("\\s+");
      if (f.length != 5) throw new IllegalArgumentException(file + ":" + lineNo + ": expected 5 fields, got " + f.length);
      ResourceType type = ResourceType.fromString(f[1].toUpperCase(java.util.Locale.ROOT));
      PatternType pattern = PatternType.fromString(f[2].toUpperCase(java.util.Locale.ROOT));
      if (type == ResourceType.UNKNOWN || pattern == PatternType.UNKNOWN) throw new IllegalArgumentException(file + ":" + lineNo + ": bad resource or pattern");
      for (String op : f[4].split(",")) {
        AclOperation operation = AclOperation.fromString(op.toUpperCase(java.util.Locale.ROOT));
        if (operation == AclOperation.UNKNOWN) throw new IllegalArgumentException(file + ":" + lineNo + ": unknown operation " + op);
        out.add(new AclBinding(new ResourcePattern(type, f[3], pattern),
            new AccessControlEntry("User:" + f[0], "*", operation, AclPermissionType.ALLOW)));
      }
    }
    return out;
  }
}
