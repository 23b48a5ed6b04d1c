import { ADMIN_API, type AdminApi } from '../admin/api.js';
import { AdminClient } from '../admin/client.js';
import { adminSocketPath } from '../admin/wire.js';
import { stateDirOf } from './args.js';

/** The typed admin client for the state directory the flags name. */
export function adminClient(values: Record<string, unknown>): AdminClient<AdminApi> {
  return new AdminClient(adminSocketPath(stateDirOf(values)), ADMIN_API);
}
