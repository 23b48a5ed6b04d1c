/**
 * The shell half of a job. Each script runs as PID 1 of a fresh PID namespace
 * inside a private mount namespace (see `jobCommand`), so every mount it makes
 * and every process it starts dies with it. It takes every value from the
 * environment or "$@", never from text pasted into the script.
 *
 * Environment (job-env.ts builds all of it, nothing inherited): MNT PORT
 * SFTP_SECRET (a file) MOUNT_OPTS (sshfs through the tunnel), PASSPHRASE_FILE
 * REPO ARCHIVE, and per script the files below.
 * "$@": extra borg arguments (excludes).
 *
 * What a script reports besides borg's own log: one `RESULT` line at the end
 * and, on a setup failure, one `ERROR` line (their tags and parser: output.ts;
 * their launcher: launcher.ts).
 */
import { ERROR_TAG, RESULT_TAG } from './output.js';

/**
 * The SFTP connector (Python, because it must end in exec: no process of ours
 * stays in the data path). It connects to the tunnel port, sends the job's
 * secret from its root-only file, waits for the agent's one ok byte (the
 * agent sends nothing else before SFTP, and nothing if the secret is wrong),
 * then becomes sshfs with the connected socket as stdin and stdout
 * (`-o passive`: sshfs speaks SFTP over them, no ssh). TCP_NODELAY: sshfs
 * writes small requests and must not wait on delayed ACKs. Single quotes
 * never appear in it: it sits in a single-quoted shell word.
 */
export const CONNECT_PY = String.raw`import os, socket, sys
port, secret_file = int(sys.argv[1]), sys.argv[2]
with open(secret_file, "rb") as f:
    secret = f.read(4096)
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(secret)
try:
    ok = s.recv(1)
except OSError:
    ok = b""
if ok != b"\x01":
    sys.stderr.write("the client refused the SFTP connection (a wrong secret, or its agent is not serving this job)\n")
    sys.exit(70)
s.setblocking(True)
fd = s.detach()
os.dup2(fd, 0)
os.dup2(fd, 1)
os.close(fd)
os.execvp(sys.argv[3], sys.argv[3:])
`;

/**
 * Mounts the client's / read-only through the tunnel, in the foreground, and
 * waits for it. SFTP goes straight to the agent's sftp-server: the connector
 * becomes sshfs (same pid), and the mount source `borgpull:` (empty path)
 * means sftp-server's starting directory, which the agent sets.
 */
const MOUNT = String.raw`
set -u
fail() { echo "${ERROR_TAG} $1 $2" >&2; exit 70; }
python3 -I -S -c '${CONNECT_PY}' "$PORT" "$SFTP_SECRET" \
  sshfs -f -o "passive,$MOUNT_OPTS,max_read=1048576" borgpull: "$MNT" 2>"$JOB_DIR/sshfs.err" &
SSHFS=$!
i=0
# Listed as mounted is not enough: wait until the mount answers (seen once in a CI-like run:
# the job's cd into a freshly listed mount failed).
until mountpoint -q "$MNT" && stat -t "$MNT/." >/dev/null 2>&1; do
  kill -0 "$SSHFS" 2>/dev/null || fail E_JOB_MOUNT "sshfs could not mount the client: $(tail -n 2 "$JOB_DIR/sshfs.err" | tr '\n' ' ')"
  i=$((i + 1)); [ "$i" -lt 300 ] || fail E_JOB_MOUNT "sshfs did not mount the client within 30s"
  sleep 0.1
done
connection_ok() { kill -0 "$SSHFS" 2>/dev/null && stat -t "$MNT/." >/dev/null 2>&1; }
`;

/** Reports borg's exit status and whether the client was still mounted at the end, then unmounts. */
const FINISH = String.raw`
rc=$?
if connection_ok; then conn=1; else conn=0; fi
echo "${RESULT_TAG} rc=$rc connection=$conn" >&2
cd /
kill "$SSHFS" 2>/dev/null
wait "$SSHFS" 2>/dev/null
exit 0
`;

/**
 * namespace isolation: the server's own borg, with a passwd and group built
 * from the client's names and ids (home /nonexistent, shell nologin: never the
 * client's text, see client-names.ts) bind-mounted over the server's in this
 * namespace only, cwd at the mount, `borg create ... .`. sshfs is already
 * running when they are bound, before any name lookup of its own. No client code
 * runs on the server: HOME, the user site dir and sys.path stay off the mount
 * (job-env.ts), and borg is given `.`, never a client file name.
 */
export const NAMESPACE_CREATE = String.raw`${MOUNT}
mount --bind "$CLIENT_PASSWD" /etc/passwd || fail E_JOB_SETUP "cannot bind the client's passwd"
mount --bind "$CLIENT_GROUP" /etc/group || fail E_JOB_SETUP "cannot bind the client's group"
mount --bind "$NSSWITCH" /etc/nsswitch.conf || fail E_JOB_SETUP "cannot bind nsswitch.conf"
for d in /run/nscd /var/run/nscd; do
  if [ -d "$d" ]; then mount -t tmpfs -o size=16k,mode=0755 borgpull-nscd-mask "$d"; fi
done
cd "$MNT" 2>"$JOB_DIR/cd.err" || fail E_JOB_MOUNT "cannot enter the mount: $(tr '\n' ' ' <"$JOB_DIR/cd.err") $(tail -n 2 "$JOB_DIR/sshfs.err" | tr '\n' ' ')"
borg create --log-json --progress --json --list --filter=AME --files-cache ctime,size --noflags --noxattrs --noacls \
  "$@" "$REPO::$ARCHIVE" . 3<"$PASSPHRASE_FILE"
${FINISH}`;

/**
 * chroot isolation (the reference recipe, hardened): the client's tree is the
 * lower layer of an overlay whose upper layer (a tmpfs) already holds real
 * directories for borgrepo and borgbase, so no link planted by the client can
 * redirect a bind mount onto the server. Nothing is written to the client.
 * The server's dev, proc and sys are not bound in: borg create does not need
 * them, and /proc/<pid>/root would let the chroot read the server's files.
 * borg, its libraries and NSS modules are the client's own: this runs the
 * client's code as root on the server, by design. It is for clients trusted
 * as much as the server; the only server state it sees is its own repository
 * and its own borg base dir (cache, security, temp), never another agent's.
 */
export const CHROOT_CREATE = String.raw`${MOUNT}
STAGE="$JOB_DIR/stage"
mount -t tmpfs -o size=1m,mode=0700 borgpull-upper "$JOB_DIR/upper" || fail E_JOB_SETUP "cannot mount the overlay's upper tmpfs"
mkdir -p "$JOB_DIR/upper/u" "$JOB_DIR/upper/w" || fail E_JOB_SETUP "cannot prepare the overlay"
for d in borgrepo borgbase; do mkdir -m 0755 "$JOB_DIR/upper/u/$d" || fail E_JOB_SETUP "cannot prepare $d"; done
# The overlay's root is the upper directory: give it the client root's owner, mode and
# times, so that the archive's root item is the same as in namespace isolation.
chown --reference="$MNT" "$JOB_DIR/upper/u" && chmod --reference="$MNT" "$JOB_DIR/upper/u" \
  && touch --reference="$MNT" "$JOB_DIR/upper/u" || fail E_JOB_SETUP "cannot copy the client root's attributes"
mount -t overlay borgpull-stage -o "lowerdir=$MNT,upperdir=$JOB_DIR/upper/u,workdir=$JOB_DIR/upper/w" "$STAGE" \
  || fail E_JOB_SETUP "cannot stack an overlay on the client's tree"
mount --bind "$REPO" "$STAGE/borgrepo" || fail E_JOB_SETUP "cannot bind the repository"
mount --bind "$BORG_BASE_DIR" "$STAGE/borgbase" || fail E_JOB_SETUP "cannot bind borg's cache"
# The client's borg may live in /usr/local (pip): look there too, inside the chroot.
CPATH=/usr/local/sbin:/usr/local/bin:$PATH
PATH=$CPATH chroot "$STAGE" /bin/sh -c 'command -v borg' >/dev/null 2>&1 \
  || fail E_JOB_CHROOT_BORG "chroot isolation needs borg installed on the client (not found in its PATH)"
# Temp files go to the server too: a write to the client's /tmp would land in the
# overlay (changing the archived /tmp) and fill its small upper layer.
PATH=$CPATH HOME=/borgbase BORG_BASE_DIR=/borgbase TMPDIR=/borgbase/tmp chroot "$STAGE" borg create --log-json --progress --json --list --filter=AME --files-cache ctime,size \
  --noflags --noxattrs --noacls --exclude /borgrepo --exclude /borgbase \
  "$@" "/borgrepo::$ARCHIVE" / 3<"$PASSPHRASE_FILE"
${FINISH}`;

/** sshfs options for a backup: read-only, symlinks passed through exactly as they are. */
export const BACKUP_MOUNT_OPTS = 'ro,no_contain_symlinks';
