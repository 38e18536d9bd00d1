#!/usr/bin/env bash
# The layout of the previous release, as its overlay_mounts left it: each
# user's overlays mounted in the home (~/.cache/pip, ~/.npm), upper and work
# in a user-owned scratch dir, and the fstab block naming the home targets.
# Each user has data in their upper that the migration must keep.
set -euo pipefail
lower=/var/lib/pkgcache/trees/$1
opts=index=off,xino=off,metacopy=off,nosuid,nodev
block=""
for user in alice bob mallory; do
  for eco in pip npm; do
    case $eco in pip) target=/home/$user/.cache/pip ;; npm) target=/home/$user/.npm ;; esac
    layers=/mnt/scratch/$user/cacache_$eco
    install -d -o "$user" -g "$user" -m 0700 "/mnt/scratch/$user" "$layers" "$layers/upper" "$layers/work"
    install -d -o "$user" -g "$user" -m 0700 "$(dirname "$target")" "$target"
    echo "$user kept this $eco file" > "$layers/upper/users-own-$eco.txt"
    chown "$user:$user" "$layers/upper/users-own-$eco.txt"
    block+="overlay $target overlay lowerdir=$lower/$eco,upperdir=$layers/upper,workdir=$layers/work,$opts 0 0"$'\n'
  done
done
printf '# an operator line that must survive\ntmpfs /mnt/operator-tmp tmpfs defaults,noauto 0 0\n' >> /etc/fstab
printf '# BEGIN pkgcache.overlay mounts (managed by Ansible, do not edit)\n%s# END pkgcache.overlay mounts\n' "$block" >> /etc/fstab
cp /etc/fstab /root/fstab.old-layout
for user in alice bob mallory; do
  mount --fstab /etc/fstab --target "/home/$user/.cache/pip"
  mount --fstab /etc/fstab --target "/home/$user/.npm"
done
